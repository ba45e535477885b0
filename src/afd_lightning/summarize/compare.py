"""``afd-summarize ROOT --compare A B``: two groups of runs compared metric by metric, with a CI and p-values.

A group is a selector over the run fields ``method``, ``recipe``, ``dataset``, ``network`` and ``seed``
(``"method=AFD,recipe=paper_digits_afd"``; every term must hold; method, dataset and network ignore case, the
recipe must be the summary's recipe string exactly). For every column of the summary that both groups have
(:data:`~afd_lightning.summarize.discovery.EVAL_COLUMNS` and ``TRAIN_COLUMNS``), in percentage points:

* the difference of the means over seeds, group A - group B;
* its 95% bootstrap interval (:func:`~afd_lightning.evaluation.stats.bootstrap_difference_ci`: BCa, 9,999
  resamples, seed 0, so the same runs give the same interval);
* Welch's t test across seeds (two-sided; :func:`~afd_lightning.evaluation.stats.welch_test`), with n per group;
* where results.json kept which test images each model got right (``CurveRecord.robust_through``), the exact
  McNemar test on the images (:func:`~afd_lightning.evaluation.stats.mcnemar_exact`): each run of A is paired
  with the run of B of the same dataset and seed, on the test images both evaluated, and the discordant
  images of every pair are pooled. It treats the images of all seeds as one sample, so it speaks to these
  models on these images; Welch's test is the one about the recipe (another seed, another model).

Written to ``compare.json`` (:class:`Comparison`, the shape docs quote) and ``compare.md``.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from afd_lightning.errors import AFDUserError
from afd_lightning.evaluation import stats
from afd_lightning.evaluation.report.tables import markdown_table
from afd_lightning.files.escape import code_span, one_line
from afd_lightning.files.writer import write_text_atomic
from afd_lightning.summarize.discovery import EVAL_COLUMNS, TRAIN_COLUMNS, Run

log = logging.getLogger(__name__)

FIELDS = ("method", "recipe", "dataset", "network", "seed")
# Terms are split at a comma that starts a new ``field=``, so a recipe's own overrides may hold commas and '='.
_TERMS = re.compile(r",\s*(?=(?:" + "|".join(FIELDS) + r")\s*=)")
NOT_PAIRED = "not available (no per-image records)"
FORMAT = "afd-compare/1"


class CompareError(AFDUserError):
    """A malformed selector, or one that selects no run (or the same runs as the other)."""


@dataclass(frozen=True)
class Selector:
    """``key=value[,key=value...]`` over :data:`FIELDS`; a run is selected when every term holds."""

    text: str
    terms: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        shown = one_line(text, 120)
        if not text.strip():
            raise CompareError(f"--compare: an empty selector; write key=value[,key=value], keys {', '.join(FIELDS)}")
        terms: list[tuple[str, str]] = []
        for part in _TERMS.split(text.strip()):
            key, eq, value = (s.strip() for s in part.partition("="))
            if not eq or key not in FIELDS or not value:
                raise CompareError(
                    f"--compare {shown!r}: {one_line(part, 60)!r} is not key=value with a key among {', '.join(FIELDS)}"
                )
            if key in dict(terms):
                raise CompareError(f"--compare {shown!r}: {key} is given twice")
            if key == "seed" and not re.fullmatch(r"-?\d+", value):
                raise CompareError(f"--compare {shown!r}: seed={one_line(value, 30)} is not an integer")
            terms.append((key, value))
        return cls(text.strip(), tuple(terms))

    def matches(self, run: Run) -> bool:
        for key, value in self.terms:
            have = getattr(run, key)
            if key == "seed":
                if have is None or int(have) != int(value):
                    return False
            elif key == "recipe":
                if have != value:
                    return False
            elif str(have).lower() != value.lower():
                return False
        return True


@dataclass
class Group:
    """The runs one selector picked: their folders (relative to the root), seeds, recipes and datasets."""

    selector: str
    runs: list[str]
    seeds: list[int | None]
    recipes: list[str]
    datasets: list[str]


@dataclass
class MetricComparison:
    """One column of the summary, group A against group B, in percentage points.

    ``difference`` is mean(A) - mean(B) over the runs that have the column (``n_a``, ``n_b``); ``bootstrap``
    its 95% interval (None with fewer than two runs in a group); ``welch`` Welch's t test across seeds;
    ``mcnemar`` the exact test on the test images of the run pairs of ``paired_seeds`` (None, with
    ``paired_note`` saying why, where no pair has per-image records of the column).
    """

    metric: str
    label: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    bootstrap: stats.BootstrapCI | None
    welch: stats.WelchResult
    mcnemar: stats.McNemarResult | None = None
    paired_seeds: list[int] = field(default_factory=list)
    paired_note: str = ""

    @property
    def ci95(self) -> tuple[float, float] | None:
        return None if self.bootstrap is None else (self.bootstrap.low, self.bootstrap.high)


@dataclass
class Comparison:
    """``compare.json``: the two groups, the tests' settings, and one :class:`MetricComparison` per column.

    ``missing`` names the columns that one group lacks (and so are not compared).
    """

    group_a: Group
    group_b: Group
    metrics: list[MetricComparison]
    missing: dict[str, str] = field(default_factory=dict)
    tests: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    format: str = FORMAT

    def metric(self, key: str) -> MetricComparison | None:
        return next((m for m in self.metrics if m.metric == key), None)

    def to_json(self) -> dict:
        return asdict(self)


TESTS = {
    "difference": "mean over group A's runs minus mean over group B's runs, percentage points",
    "bootstrap": (
        f"95% bootstrap interval of the difference of means (scipy.stats.bootstrap, BCa, "
        f"{stats.BOOTSTRAP_RESAMPLES} resamples, seed {stats.BOOTSTRAP_SEED}; each group resampled within itself)"
    ),
    "welch_t": "Welch's unequal-variance t test across runs (scipy.stats.ttest_ind, equal_var=False), two-sided",
    "mcnemar_exact": (
        "exact McNemar test on per-image outcomes at the table eps (scipy.stats.binomtest on the discordant "
        "images, p = 1/2, two-sided): runs of A and B paired by dataset and seed, on the test images both "
        "evaluated, discordant images pooled over the pairs"
    ),
}


def select(runs: list[Run], a: Selector, b: Selector) -> tuple[list[Run], list[Run]]:
    """The runs of each selector; refuses one that matches nothing, and a run that both match."""
    chosen = []
    for name, selector in (("A", a), ("B", b)):
        members = [r for r in runs if selector.matches(r)]
        if not members:
            raise CompareError(
                f"--compare group {name} ({one_line(selector.text, 120)}) matches none of the {len(runs)} runs; "
                f"methods: {', '.join(sorted({r.method for r in runs}))}; "
                f"recipes: {', '.join(sorted({one_line(r.recipe, 60) for r in runs}))}"
            )
        chosen.append(members)
    in_b = {id(r) for r in chosen[1]}
    both = [r for r in chosen[0] if id(r) in in_b]
    if both:
        raise CompareError(
            f"--compare: {len(both)} run(s) match both groups (e.g. {one_line(_name(both[0]), 120)}); "
            "make the selectors disjoint"
        )
    return chosen[0], chosen[1]


def _name(run: Run) -> str:
    return run.name or str(run.path)


def _group(selector: Selector, members: list[Run]) -> Group:
    datasets = sorted({r.dataset for r in members})
    if len(datasets) > 1:
        log.warning("--compare group %s mixes datasets (%s)", one_line(selector.text, 120), ", ".join(datasets))
    return Group(
        selector.text,
        [_name(r) for r in members],
        [r.seed for r in members],
        sorted({r.recipe for r in members}),
        datasets,
    )


def paired_images(a: list[Run], b: list[Run], key: str) -> tuple[stats.McNemarResult | None, list[int]]:
    """The exact McNemar test of ``key`` pooled over run pairs (same dataset and seed), and the pairs' seeds.

    Images are matched by their index in the test set (``sample_indices``), so two evaluations of other
    subsets still pair on the images they share. None where no pair has per-image records of ``key``.
    """
    by_b: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for run in b:
        if run.seed is not None and key in run.per_image:
            by_b[(run.dataset, run.seed)].append(run)
    only_a = only_b = images = 0
    seeds = []
    for run in a:
        if run.seed is None or key not in run.per_image or not by_b.get((run.dataset, run.seed)):
            continue
        other = by_b[(run.dataset, run.seed)].pop(0)  # several runs with one seed pair in path order
        mine, theirs = run.per_image[key], other.per_image[key]
        shared = mine.keys() & theirs.keys()
        only_a += sum(mine[i] and not theirs[i] for i in shared)
        only_b += sum(theirs[i] and not mine[i] for i in shared)
        images += len(shared)
        seeds.append(run.seed)
    if not seeds:
        return None, []
    return stats.mcnemar_exact(only_a, only_b, images), sorted(seeds)


@dataclass
class ColumnComparison:
    """Two columns of the summary measured on the same runs (two attacks on the same checkpoints), in points.

    ``difference`` is the mean over runs of ``key_a - key_b``; ``bootstrap`` its 95% interval; ``paired_t`` the
    paired t test over runs; ``mcnemar`` the exact test pooled over the runs' shared images where both columns
    kept per-sample records (None otherwise).
    """

    key_a: str
    key_b: str
    label_a: str
    label_b: str
    n: int
    mean_a: float
    mean_b: float
    difference: float
    bootstrap: stats.BootstrapCI | None
    paired_t: stats.PairedTResult
    mcnemar: stats.McNemarResult | None = None
    seeds: list[int | None] = field(default_factory=list)

    @property
    def ci95(self) -> tuple[float, float] | None:
        return None if self.bootstrap is None else (self.bootstrap.low, self.bootstrap.high)


def compare_columns(runs: list[Run], group: Selector, key_a: str, key_b: str) -> ColumnComparison:
    """Column ``key_a`` against ``key_b`` over the runs of ``group`` that have both (see :class:`ColumnComparison`)."""
    labels = dict(EVAL_COLUMNS + TRAIN_COLUMNS)
    for key in (key_a, key_b):
        if key not in labels:
            raise CompareError(f"{key!r} is not a summary column ({', '.join(labels)})")
    members = [r for r in runs if group.matches(r) and key_a in r.values and key_b in r.values]
    if not members:
        raise CompareError(f"no run of {group.text!r} has both {key_a} and {key_b}")
    xs, ys = [r.values[key_a] for r in members], [r.values[key_b] for r in members]
    only_a = only_b = images = 0
    for run in members:
        if key_a in run.per_image and key_b in run.per_image:
            mine, theirs = run.per_image[key_a], run.per_image[key_b]
            shared = mine.keys() & theirs.keys()
            only_a += sum(mine[i] and not theirs[i] for i in shared)
            only_b += sum(theirs[i] and not mine[i] for i in shared)
            images += len(shared)
    return ColumnComparison(
        key_a=key_a,
        key_b=key_b,
        label_a=labels[key_a],
        label_b=labels[key_b],
        n=len(members),
        mean_a=statistics.fmean(xs),
        mean_b=statistics.fmean(ys),
        difference=statistics.fmean(x - y for x, y in zip(xs, ys)),
        bootstrap=stats.bootstrap_mean_ci([x - y for x, y in zip(xs, ys)]),
        paired_t=stats.paired_t_test(xs, ys),
        mcnemar=stats.mcnemar_exact(only_a, only_b, images) if images else None,
        seeds=[r.seed for r in members],
    )


def compare(runs: list[Run], a: Selector, b: Selector, provenance: dict | None = None) -> Comparison:
    """Group A against group B on every column of the summary both groups have (see the module docstring)."""
    group_a, group_b = select(runs, a, b)
    metrics, missing = [], {}
    for key, label in EVAL_COLUMNS + TRAIN_COLUMNS:
        xs = [r.values[key] for r in group_a if key in r.values]
        ys = [r.values[key] for r in group_b if key in r.values]
        if not xs or not ys:
            if xs or ys:
                missing[key] = f"n_a={len(xs)}, n_b={len(ys)}"
            continue
        welch = stats.welch_test(xs, ys)
        mcnemar, seeds = paired_images(group_a, group_b, key)
        metrics.append(
            MetricComparison(
                metric=key,
                label=label,
                n_a=len(xs),
                n_b=len(ys),
                mean_a=statistics.fmean(xs),
                mean_b=statistics.fmean(ys),
                difference=welch.difference,
                bootstrap=stats.bootstrap_difference_ci(xs, ys),
                welch=welch,
                mcnemar=mcnemar,
                paired_seeds=seeds,
                paired_note="" if mcnemar else NOT_PAIRED,
            )
        )
    if not metrics:
        raise CompareError(
            f"--compare: the groups share no measured column ({len(group_a)} and {len(group_b)} runs); "
            "evaluate both with eval.py, or compare runs that finished training (metrics.json)"
        )
    return Comparison(_group(a, group_a), _group(b, group_b), metrics, missing, dict(TESTS), provenance)


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def markdown(c: Comparison) -> str:
    """compare.md: one row per column; selectors shown as code, cells escaped by the table writer."""
    rows = []
    for m in c.metrics:
        ci = "–" if m.ci95 is None else f"{m.ci95[0]:+.2f} to {m.ci95[1]:+.2f}"
        paired = m.paired_note or "–"
        if m.mcnemar is not None:
            pairs = len(m.paired_seeds)
            paired = (
                f"{_p(m.mcnemar.p)} ({m.mcnemar.only_a} vs {m.mcnemar.only_b} of {m.mcnemar.pairs} images, "
                f"{pairs} seed pair{'s' if pairs > 1 else ''})"
            )
        rows.append(
            [
                m.label,
                f"{m.mean_a:.2f} (n={m.n_a})",
                f"{m.mean_b:.2f} (n={m.n_b})",
                f"{m.difference:+.2f}",
                ci,
                _p(m.welch.p),
                paired,
            ]
        )
    head = ["Metric", "A", "B", "A − B (points)", "95% CI (bootstrap)", "Welch p", "McNemar p (paired images)"]
    text = (
        f"A: {code_span(c.group_a.selector)} ({len(c.group_a.runs)} runs); "
        f"B: {code_span(c.group_b.selector)} ({len(c.group_b.runs)} runs).\n\n"
        "Accuracy in %, mean over each group's runs; A − B in percentage points with its 95% bootstrap interval "
        f"(BCa, {stats.BOOTSTRAP_RESAMPLES} resamples, seed {stats.BOOTSTRAP_SEED}); Welch's t test across runs, "
        "two-sided; the exact McNemar test on the test images of runs paired by dataset and seed, pooled over "
        "the pairs (images only A's model got right vs only B's). Tests: compare.json."
    )
    if c.missing:
        text += " Not compared (one group lacks them): " + ", ".join(f"{k} ({v})" for k, v in c.missing.items()) + "."
    return text + "\n\n" + markdown_table(head, rows) + "\n"


def write(c: Comparison, out_dir: Path) -> tuple[Path, Path]:
    """compare.json and compare.md into ``out_dir``, through the no-follow writer."""
    json_path, md_path = Path(out_dir) / "compare.json", Path(out_dir) / "compare.md"
    write_text_atomic(json_path, json.dumps(c.to_json(), indent=2) + "\n")
    write_text_atomic(md_path, markdown(c))
    return json_path, md_path

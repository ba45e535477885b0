"""The comparative claims of the docs, computed from a study's committed per-run records and worded by one rule.

    python tools/claims.py docs/results/STUDY        # reads STUDY/claims.yaml and STUDY/runs, writes STUDY/claims.json

``claims.yaml`` (ours, committed) lists what the pages say about the study: for each claim an ``id``, two groups of
runs (``afd-summarize --compare`` selectors, e.g. ``method=afd,recipe=paper_digits_afd`` and ``method=at``) and the
metric (a summary column: ``autoattack``, ``pgd_aa_gap``, ...). For each, the difference of means (A − B, points), its
95% bootstrap interval, Welch's t test across seeds and, where the evaluations kept per-image records, the exact
McNemar test on the same test images (:mod:`afd_lightning.summarize.compare`, :mod:`afd_lightning.evaluation.stats`).

**The wording rule** (docs/findings.md states it too): the claims of one file are one family. A claim is worded
"below" or "above" only when Welch's p across seeds is significant at ``alpha`` (0.05) after Holm's correction over
the family; otherwise it reads "not distinguishable from ... with n = a and b seeds". Welch decides because a claim
about a recipe is about training runs, and seeds are its unit; McNemar, which treats images as the unit for the
trained models at hand, is reported beside it, never used to decide. A claim about two attacks on the same runs
(``metric`` and ``metric_b``, no ``b``: "APGD-CE is below PGD-40 on AFD") is decided the same way by the paired t
test over the runs, with a bootstrap interval of the mean paired difference. The docs render each claim's sentence with
``<!-- claim source=docs/results/STUDY/claims.json id=ID -->...<!-- /claim -->`` (tools/docs_tables.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from afd_lightning.evaluation import stats
from afd_lightning.files.reader import read_yaml
from afd_lightning.files.writer import write_text_atomic
from afd_lightning.summarize.compare import Selector, compare, compare_columns
from afd_lightning.summarize.discovery import attach_evaluations, find_runs

ALPHA = 0.05
FORMAT = "afd-claims/1"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _numbers(claim: dict, test_name: str, undefined: str, seeds: str) -> str:
    """The difference, its interval, the deciding test (Holm-adjusted in a family) and McNemar, in words."""
    lo, hi = claim["ci95"] if claim["ci95"] else (None, None)
    ci = f"95% CI {lo:+.1f} to {hi:+.1f}" if lo is not None else "no interval with one run"
    if claim["welch_p"] is None:
        test = undefined
    elif claim["family_size"] > 1:
        test = f"{test_name} p = {_p(claim['welch_p'])} (Holm-adjusted over {claim['family_size']} claims: {_p(claim['welch_p_holm'])})"
    else:
        test = f"{test_name} p = {_p(claim['welch_p'])}"
    return (
        f"{claim['difference']:+.1f} points, {ci}; {test}"
        + (f"; paired McNemar p = {_p(claim['mcnemar_p'])}" if claim["mcnemar_p"] is not None else "")
        + f"; n = {seeds} seeds"
    )


def sentence(claim: dict) -> str:
    """The claim in words, by the rule: the verdict, the difference, its interval and both tests."""
    if claim.get("kind") == "paired_columns":  # two attacks on the same runs: the paired t test decides
        numbers = _numbers(
            claim,
            "paired t",
            "no paired t test (fewer than two runs, or the same difference in each)",
            f"{claim['n_a']}",
        )
        a, metric, other = claim["a_label"], claim["metric_label"], claim["metric_b_label"]
        if claim["verdict"] in ("below", "above"):
            return f"on {a}, {metric} is {claim['verdict']} {other} ({numbers})"
        return f"on {a}, {metric} is not distinguishable from {other} with these seeds ({numbers})"
    numbers = _numbers(
        claim,
        "Welch",
        "no Welch test (fewer than two runs, or no spread, in a group)",
        f"{claim['n_a']} and {claim['n_b']}",
    )
    a, b, metric = claim["a_label"], claim["b_label"], claim["metric_label"]
    if claim["verdict"] in ("below", "above"):
        return f"{a} is {claim['verdict']} {b} on {metric} ({numbers})"
    return f"{a} is not distinguishable from {b} on {metric} with these seeds ({numbers})"


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _paired_claim(runs, item: dict) -> dict:
    """A claims.yaml item with ``metric_b``: column ``metric`` against ``metric_b`` on the runs of ``a``."""
    c = compare_columns(runs, Selector.parse(item["a"]), item["metric"], item["metric_b"])
    return {
        "id": item["id"],
        "kind": "paired_columns",
        "a": item["a"],
        "a_label": item.get("a_label", item["a"]),
        "metric": c.key_a,
        "metric_label": item.get("metric_label", c.label_a),
        "metric_b": c.key_b,
        "metric_b_label": item.get("metric_b_label", c.label_b),
        "n_a": c.n,
        "mean_a": round(c.mean_a, 4),
        "mean_b": round(c.mean_b, 4),
        "difference": round(c.difference, 4),
        "ci95": None if c.ci95 is None else [round(c.ci95[0], 4), round(c.ci95[1], 4)],
        "welch_p": c.paired_t.p,  # the deciding test's p (here the paired t test), under the key the rule reads
        "test": "paired_t",
        "mcnemar_p": None if c.mcnemar is None else c.mcnemar.p,
        "mcnemar_pairs": c.seeds,
    }


def build(study: Path) -> dict:
    """claims.json's content for ``study`` (its claims.yaml over its committed runs)."""
    spec = read_yaml(study / "claims.yaml", what="claims spec")
    alpha = float(spec.get("alpha", ALPHA))
    root = study / "runs"
    runs = find_runs(root)
    attach_evaluations(root, runs)
    claims = []
    for item in spec["claims"]:
        if "metric_b" in item:  # two attacks on the same runs: paired over runs
            claims.append(_paired_claim(runs, item))
            continue
        comparison = compare(runs, Selector.parse(item["a"]), Selector.parse(item["b"]))
        m = comparison.metric(item["metric"])
        if m is None:
            raise SystemExit(f"claim {item['id']}: no {item['metric']} in both groups ({comparison.missing})")
        claims.append(
            {
                "id": item["id"],
                "a": item["a"],
                "b": item["b"],
                "a_label": item.get("a_label", item["a"]),
                "b_label": item.get("b_label", item["b"]),
                "metric": m.metric,
                "metric_label": item.get("metric_label", m.label),
                "n_a": m.n_a,
                "n_b": m.n_b,
                "mean_a": round(m.mean_a, 4),
                "mean_b": round(m.mean_b, 4),
                "difference": round(m.difference, 4),
                "ci95": None if m.ci95 is None else [round(m.ci95[0], 4), round(m.ci95[1], 4)],
                "welch_p": m.welch.p,
                "mcnemar_p": None if m.mcnemar is None else m.mcnemar.p,
                "mcnemar_pairs": m.paired_seeds,
            }
        )
    p_values = [
        1.0 if c["welch_p"] is None else c["welch_p"] for c in claims
    ]  # undefined (no spread): never significant
    adjusted = holm_adjusted(p_values)
    decided = stats.holm(p_values, alpha)
    for claim, p_holm, significant in zip(claims, adjusted, decided):
        claim["family_size"] = len(claims)
        claim["welch_p_holm"] = p_holm
        claim["verdict"] = ("below" if claim["difference"] < 0 else "above") if significant else "not distinguishable"
        claim["sentence"] = sentence(claim)
    return {
        "format": FORMAT,
        "study": study.name,
        "alpha": alpha,
        "rule": (
            "below/above only when Welch's p across seeds (the paired t test over runs, for two attacks on the same "
            "runs) is below alpha after Holm's correction over the claims of this file; otherwise not distinguishable "
            "with these seeds. McNemar (per image) is reported, not used."
        ),
        "claims": claims,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path, help="docs/results/<study> (with claims.yaml and runs/)")
    args = parser.parse_args(argv)
    data = build(args.study)
    write_text_atomic(args.study / "claims.json", json.dumps(data, indent=2) + "\n")
    for claim in data["claims"]:
        print(f"{claim['id']}: {claim['sentence']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

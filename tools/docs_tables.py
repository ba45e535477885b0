"""Rewrite the generated tables in README.md and docs/ from committed JSON and the shipped configs.

A generated table sits between two markers::

    <!-- table:NAME source=PATH -->
    ...generated text, never edited by hand...
    <!-- /table -->

``NAME`` picks a renderer below; ``PATH`` (relative to the repository root) is the JSON file or config
folder it reads. ``python tools/docs_tables.py --write`` rewrites every region; ``--check`` (the
default) exits 1 and names each region whose text differs from what its source gives
(tests/test_docs.py runs the check, so a table cannot drift from its data).
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from afd_lightning.files.reader import parse_json, read_text

REPO = Path(__file__).resolve().parents[1]
# Markers stand on lines of their own (a marker quoted in prose or code is not one).
REGION = re.compile(
    r"^(?P<open><!-- table:(?P<name>[\w-]+) source=(?P<source>\S+) -->\n)(?P<body>.*?)^(?P<close><!-- /table -->)$",
    re.DOTALL | re.MULTILINE,
)
OPEN, CLOSE = re.compile(r"^<!-- table:.*-->$", re.MULTILINE), re.compile(r"^<!-- /table -->$", re.MULTILINE)
# A number in prose, inline: <!-- value source=PATH path=rows[recipe=X].columns.autoattack.mean fmt=.1f -->57.3<!-- /value -->
# (``minus=PATH2`` subtracts a second value of the same file: a difference quoted in prose is computed, not typed;
# ``count`` gives the length of a list, e.g. how many seeds a row averages: path=rows[method=AT].seeds count).
VALUE = re.compile(r"(?P<open><!-- value (?P<spec>[^>]*?) -->)(?P<body>[^<\n]*)(?P<close><!-- /value -->)")
VALUE_OPEN, VALUE_CLOSE = re.compile(r"<!-- value "), re.compile(r"<!-- /value -->")
# A comparative claim in prose, worded by the rule of tools/claims.py from a study's claims.json:
# <!-- claim source=docs/results/reproduce/claims.json id=afd_vs_at_aa -->...<!-- /claim -->
CLAIM = re.compile(r"(?P<open><!-- claim (?P<spec>[^>]*?) -->)(?P<body>[^<\n]*)(?P<close><!-- /claim -->)")
CLAIM_OPEN, CLAIM_CLOSE = re.compile(r"<!-- claim "), re.compile(r"<!-- /claim -->")


def documents(root: Path = REPO) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# ------------------------------------------------------------------ helpers


@functools.lru_cache(maxsize=64)
def _parsed(text: str, where: str):
    return parse_json(text, where)


def _record(source: Path):
    """A committed record, read each time and parsed once per content (a page quotes one record in many places)."""
    return _parsed(read_text(source, what="record"), f"record {source}")


def _table(head: list[str], rows: list[list[str]]) -> str:
    """The package's one table writer; the cells here are ours (numbers, names from committed records, and
    markdown we add), so they are passed as :class:`~afd_lightning.files.escape.Markdown`."""
    from afd_lightning.evaluation.report.tables import markdown_table
    from afd_lightning.files.escape import Markdown

    return markdown_table(head, [[Markdown(cell) for cell in row] for row in rows])


def _made_with(record: dict | None, source: str) -> str:
    """One line: the file, the command that made it, and the code, threads, device and wall time."""
    if not record:
        return f"Source: `{source}` (made before provenance was recorded)."
    command = str(record.get("command") or "").strip()
    code = record.get("commit")
    code = f"commit `{code[:10]}`" + (" + uncommitted changes" if record.get("dirty") else "") if code else ""
    code = code or f"afd-lightning {record.get('version')}"
    versions = record.get("versions") or {}
    wall = record.get("wall_s")
    parts = [
        f"Source: `{source}`",
        f"command: `python {command}`" if command.split(" ", 1)[0].endswith(".py") else f"command: `{command}`",
        code,
        f"threads={record.get('threads')}",
        str(record.get("device")),
        f"torch {versions.get('torch', '?')}",
        f"{wall:.0f} s" if isinstance(wall, (int, float)) else "",
    ]
    return "; ".join(p for p in parts if p) + "."


def _runs_made_with(data: dict, rel: str) -> str:
    """A summary's footer: what its runs share (commit, threads, CPU, device, torch), never the summarizer's own.

    Each row of an ``afd-summarize`` summary.json keeps its runs' facts (``rows[i].provenance.runs``); a fact the
    runs do not share reads ``mixed: ...`` naming the values, one a run did not record reads ``not recorded``.
    """
    from afd_lightning.run.provenance import NOT_RECORDED, RUN_FACTS, shared_facts

    facts = [f for row in data.get("rows", []) for f in ((row.get("provenance") or {}).get("runs") or {}).values()]
    if not facts:
        return f"Source: `{rel}`; the runs' provenance is not recorded in it."
    shared = shared_facts(facts)
    code = shared["commit"]
    code = code if code.startswith(("mixed", NOT_RECORDED)) else f"`{code[:10]}`"
    dirty = {"False": "", "True": " + uncommitted changes"}.get(
        shared["dirty"], f" (uncommitted changes: {shared['dirty']})"
    )
    parts = [
        f"Runs ({len(facts)}) made with commit {code}{dirty}",
        f"threads={shared['threads']}",
        f"CPU {shared['cpu']}",
        f"device {shared['device']}",
        shared["versions"],
    ]
    assert set(RUN_FACTS) == set(shared)
    return "; ".join(parts) + f". Source: `{rel}` (`afd-summarize` over the committed per-run records)."


def lookup(data, path: str, where: str):
    """The value at ``path`` in JSON ``data``: dotted keys, ``[3]`` list indexes, ``[key=value]`` list selectors."""
    node = data
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        if part.startswith("["):
            inner = part[1:-1]
            if "=" in inner:
                key, _, want = inner.partition("=")
                hits = [item for item in node if isinstance(item, dict) and str(item.get(key)) == want]
                if len(hits) != 1:
                    raise RegionError(f"{where}: {path}: {len(hits)} items have {key}={want}")
                node = hits[0]
            else:
                node = node[int(inner)]
        else:
            if not isinstance(node, dict) or part not in node:
                raise RegionError(f"{where}: {path}: no key {part!r}")
            node = node[part]
    return node


def render_value(spec: str, root: Path, where: str) -> str:
    """The text of one inline value region from its spec (``source=``, ``path=``, optional ``count``, ``minus=``,
    ``abs``, ``scale=``, ``fmt=``)."""
    fields = dict((item.split("=", 1) + [""])[:2] for item in shlex.split(spec))  # a quoted path may hold spaces
    source = root / fields["source"]
    if not source.is_file():
        raise RegionError(f"{where}: value reads {fields['source']}, which does not exist")
    data = _record(source)
    value = lookup(data, fields["path"], where)
    if "count" in fields:
        if not isinstance(value, list):
            raise RegionError(f"{where}: {fields['path']}: count needs a list, not {type(value).__name__}")
        value = len(value)
    if "minus" in fields:
        value = value - lookup(data, fields["minus"], where)
    if "abs" in fields:
        value = abs(value)
    if "scale" in fields:  # a fraction shown in %: scale=100
        value = value * float(fields["scale"])
    fmt = fields.get("fmt", "")
    return format(value, fmt) if fmt else str(value)


def render_claim(spec: str, root: Path, where: str) -> str:
    """The sentence of one claim (``source=`` a claims.json, ``id=`` the claim), as tools/claims.py worded it."""
    fields = dict(item.split("=", 1) for item in spec.split())
    source = root / fields["source"]
    if not source.is_file():
        raise RegionError(f"{where}: claim reads {fields['source']}, which does not exist")
    hits = [c for c in _record(source)["claims"] if c["id"] == fields["id"]]
    if len(hits) != 1:
        raise RegionError(f"{where}: {fields['source']} has no claim {fields['id']!r}")
    return hits[0]["sentence"]


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _first_comment(path: Path) -> str:
    """The first sentence of a config file's leading comment (``# @package`` lines skipped)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            if lines:
                break
            continue
        text = line.lstrip("#").strip()
        if text and not text.startswith("@package"):
            lines.append(text)
    joined = " ".join(lines).replace("|", "\\|")  # a pipe would end the table cell
    for end in re.finditer(r"\.(?=\s+[A-Z(`]|$)", joined):
        if not re.search(
            r"\b(Fig|Eq|Sec|Tab|al|e\.g|i\.e|cf)$", joined[: end.start()]
        ):  # abbreviations end no sentence
            return joined[: end.end()]
    return joined


# ------------------------------------------------------------------ renderers (name -> function(source))


def train_metrics(source: Path, rel: str) -> str:
    """A train.py ``metrics.json``: val/test accuracy, clean and under the dataset's PGD, in %."""
    data = _record(source)
    keys = ["val/acc_clean", "val/acc_adv", "test/acc_clean", "test/acc_adv"]
    table = _table(keys, [[_pct(data.get(k)) for k in keys]])
    return table + "\n\n" + _made_with(data.get("provenance"), rel)


def eval_table1(source: Path, rel: str) -> str:
    """An eval.py ``results.json``: its Table 1 (accuracy at the table ε), as eval.py writes it to tables.md."""
    from afd_lightning.evaluation.report.tables import table1

    results, record = _results(source)
    return table1(results) + "\n\n" + _made_with(record, rel)


def _results(source: Path):
    from afd_lightning.evaluation.report.schema import EvaluationResults

    results = EvaluationResults.load(source)
    return results, None if results.provenance is None else results.provenance.to_json()


def eval_table2(source: Path, rel: str) -> str:
    """An eval.py ``results.json``: its Table 2 (normalised AUC of every swept attack), as in tables.md."""
    from afd_lightning.evaluation.report.tables import table2

    results, record = _results(source)
    return table2(results) + "\n\n" + _made_with(record, rel)


def eval_autoattack(source: Path, rel: str) -> str:
    """An eval.py ``results.json``: accuracy after each of AutoAttack's attacks in turn."""
    from afd_lightning.evaluation.report.tables import autoattack_breakdown

    results, record = _results(source)
    return (autoattack_breakdown(results) or "*No AutoAttack in this evaluation.*") + "\n\n" + _made_with(record, rel)


CHECK_VERDICTS = {True: "pass", False: "**FAIL**", None: "n/a"}


def eval_checks(source: Path, rel: str) -> str:
    """An eval.py ``results.json``: every model check per model (pass/FAIL), then the attack diagnostics apart."""
    results, record = _results(source)
    names = list(results.models)
    checks = list(dict.fromkeys(c.name for m in results.models.values() for c in m.checks))
    rows = []
    for check in checks:
        cells = []
        for m in results.models.values():
            found = [c for c in m.checks if c.name == check]
            cells.append(CHECK_VERDICTS[found[0].passed] if found else "–")
        rows.append([f"`{check}`", *cells])
    diagnostics = [(name, c) for name, m in results.models.items() for c in m.diagnostics]
    diag = (
        "Attack diagnostics (comparisons across attack classes, not model failures): "
        + "; ".join(f"{name} `{c.name}` {'as expected' if c.passed else 'differs'}" for name, c in diagnostics)
        + "."
        if diagnostics
        else "No attack diagnostics."
    )
    return _table(["Check", *names], rows) + "\n\n" + diag + " " + _made_with(record, rel)


SUMMARY_COLUMNS = [
    ("clean", "Clean"),
    ("pgd_linf", "PGD-40"),
    ("apgd_ce", "APGD-CE"),
    ("autoattack", "**AutoAttack**"),
    ("test/acc_adv", "train.py test PGD-20"),
]


def _cell(stat: dict | None) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.2f}" if stat.get("std") is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def reproduce_aa(source: Path, rel: str) -> str:
    """``afd-summarize``'s summary.json (``make reproduce``): mean ± std over seeds, AutoAttack first."""
    if not source.is_file():
        return (
            f"*Pending: `make reproduce` writes `{rel}` (with the provenance of every run); "
            "this table is generated from it.*"
        )
    data = _record(source)
    rows = []
    for row in data["rows"]:
        cols = row["columns"]
        rows.append(
            [row["method"], row["recipe"], str(len(row["runs"]))] + [_cell(cols.get(k)) for k, _ in SUMMARY_COLUMNS]
        )
    head = ["Method", "Recipe", "n"] + [h for _, h in SUMMARY_COLUMNS]
    note = "Accuracy (%), mean ± sample std over seeds."
    return _table(head, rows) + "\n\n" + note + " " + _runs_made_with(data, rel)


ABLATION_COLUMNS = [
    ("clean", "Clean"),
    ("pgd_linf", "PGD-40"),
    ("autoattack", "**AutoAttack**"),
    ("pgd_aa_gap", "PGD − AA"),
    ("p_one", "p(y) = 1.0"),
    ("grad_below", "‖∇ₓ CE‖ < 1e-8"),
]


def _summary_table(source: Path, rel: str, columns: list[tuple[str, str]], note: str) -> str:
    """One row per recipe of an ``afd-summarize`` summary.json: method, recipe, n and ``columns`` (mean ± std)."""
    data = _record(source)
    rows = [
        [row["method"], row["recipe"], str(len(row["runs"]))] + [_cell(row["columns"].get(k)) for k, _ in columns]
        for row in data["rows"]
    ]
    head = ["Method", "Recipe", "n"] + [h for _, h in columns]
    return _table(head, rows) + "\n\n" + note + " " + _runs_made_with(data, rel)


def summary_aa(source: Path, rel: str) -> str:
    """``afd-summarize``'s summary.json over runs evaluated with the autoattack suite, every method: clean, PGD-40,
    AutoAttack, the PGD − AA gap and the saturation fractions, mean ± std over seeds (the MNIST-10k table)."""
    if not source.is_file():
        return f"*Pending: `afd-summarize` writes `{rel}`; this table is generated from it.*"
    note = "Accuracy and saturation (% of the evaluated test images), PGD − AA in points; mean ± sample std over seeds."
    return _summary_table(source, rel, ABLATION_COLUMNS, note)


ADAPTIVE_COLUMNS = [
    ("clean", "Clean"),
    ("pgd_linf", "PGD-40"),
    ("aa_apgd_ce", "AA's APGD-CE"),
    ("autoattack", "**AutoAttack**"),
    ("pgd_margin", "PGD-margin"),
    ("pgd_dlr", "PGD-DLR"),
    ("pgd_embedding", "PGD-embedding"),
    ("pgd_targeted", "PGD-targeted"),
    ("p_one", "p(y) = 1.0"),
]


def adaptive_summary(source: Path, rel: str) -> str:
    """``afd-summarize``'s summary.json over runs evaluated with the adaptive suite: PGD-40, AutoAttack's APGD-CE
    stage and AutoAttack, the fixed-step PGD variants with other losses, and saturation; mean ± std over seeds."""
    note = "Accuracy (%) at the Table 1 ε and saturation (% of the evaluated images); mean ± sample std over seeds."
    return _summary_table(source, rel, ADAPTIVE_COLUMNS, note)


def ablation(source: Path, rel: str) -> str:
    """``afd-summarize``'s summary.json over the ablation (``make ablate`` + the two recipes of ``make reproduce``):
    AutoAttack, the PGD − AA gap and the saturation fractions per recipe, mean ± std over seeds."""
    if not source.is_file():
        return f"*Pending: `afd-summarize` writes `{rel}`; this table is generated from it.*"
    data = _record(source)
    rows = []
    for row in data["rows"]:
        if row["method"] != "AFD":
            continue
        cols = row["columns"]
        rows.append([row["recipe"], str(len(row["runs"]))] + [_cell(cols.get(k)) for k, _ in ABLATION_COLUMNS])
    head = ["Recipe", "n"] + [h for _, h in ABLATION_COLUMNS]
    note = "Accuracy and saturation (% of the evaluated test images), PGD − AA in points; mean ± sample std over seeds."
    return _table(head, rows) + "\n\n" + note + " " + _runs_made_with(data, rel)


def config_groups(source: Path, rel: str) -> str:
    """The config groups of a config folder (conf/train, conf/eval) and the options each offers."""
    rows = []
    for group in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("__")):
        options = sorted(str(f.relative_to(group).with_suffix("")) for f in group.rglob("*.yaml"))
        if options:
            rows.append([f"`{group.name}`", ", ".join(options)])
    return _table(["Group", "Options"], rows) + f"\n\nGenerated from `{rel}/`."


def config_options(source: Path, rel: str) -> str:
    """One config group's options with the first line of each file's comment."""
    rows = [[f"`{f.stem}`", _first_comment(f)] for f in sorted(source.glob("*.yaml"))]
    return _table(["Option", "What it is"], rows)


def presets(source: Path, rel: str) -> str:
    """The experiment presets: the paper's and the authors' code's recipe for each dataset."""
    by_dataset: dict[str, dict[str, list[str]]] = {}
    for f in sorted(source.glob("*.yaml")):
        kind, _, rest = f.stem.partition("_")
        dataset, _, method = rest.partition("_")
        by_dataset.setdefault(dataset, {}).setdefault(kind, []).append(method)
    rows = [
        [dataset, ", ".join(kinds.get("paper", [])) or "–", ", ".join(kinds.get("official", [])) or "–"]
        for dataset, kinds in by_dataset.items()
    ]
    ablations = sorted(f.stem for f in (source / "ablation").glob("*.yaml"))
    table = _table(
        ["Dataset", "`experiment=paper_<dataset>_<method>`", "`experiment=official_<dataset>_<method>`"], rows
    )
    return table + f"\n\nPlus {len(ablations)} ablations, `experiment=ablation/<name>`: {', '.join(ablations)}."


def bench_table(source: Path, rel: str) -> str:
    """The first markdown table of a committed benchmark report (``benchmarks/results/*.md``, written with its JSON
    by the benchmark script), quoted whole, so the page cannot differ from the record."""
    lines = read_text(source, what="benchmark report").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise RegionError(f"{rel} holds no markdown table")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end]) + f"\n\nSource: `{rel}` (with its JSON beside it)."


RENDERERS: dict[str, Callable[[Path, str], str]] = {
    "bench_table": bench_table,
    "adaptive_summary": adaptive_summary,
    "train_metrics": train_metrics,
    "eval_table1": eval_table1,
    "eval_table2": eval_table2,
    "eval_autoattack": eval_autoattack,
    "eval_checks": eval_checks,
    "reproduce_aa": reproduce_aa,
    "ablation": ablation,
    "summary_aa": summary_aa,
    "config_groups": config_groups,
    "config_options": config_options,
    "presets": presets,
}


# ------------------------------------------------------------------ rewriting


class RegionError(ValueError):
    """A marker names no renderer, or its source does not exist."""


def render(text: str, root: Path = REPO, where: str = "") -> str:
    """``text`` with every generated region rewritten from its source."""

    def one(match: re.Match) -> str:
        name, rel = match["name"], match["source"]
        if name not in RENDERERS:
            raise RegionError(f"{where}: table:{name} is not one of {', '.join(RENDERERS)}")
        source = root / rel
        if not source.exists() and name not in ("reproduce_aa", "ablation", "summary_aa"):
            raise RegionError(f"{where}: table:{name} reads {rel}, which does not exist")
        return match["open"] + RENDERERS[name](source, rel).rstrip("\n") + "\n" + match["close"]

    if len(OPEN.findall(text)) != len(CLOSE.findall(text)):
        raise RegionError(f"{where}: a <!-- table:... --> marker without its <!-- /table --> (or the reverse)")
    if len(VALUE_OPEN.findall(text)) != len(VALUE_CLOSE.findall(text)):
        raise RegionError(f"{where}: a <!-- value ... --> marker without its <!-- /value --> (or the reverse)")
    if len(CLAIM_OPEN.findall(text)) != len(CLAIM_CLOSE.findall(text)):
        raise RegionError(f"{where}: a <!-- claim ... --> marker without its <!-- /claim --> (or the reverse)")
    text = REGION.sub(one, text)
    text = CLAIM.sub(lambda m: m["open"] + render_claim(m["spec"], root, where) + m["close"], text)
    return VALUE.sub(lambda m: m["open"] + render_value(m["spec"], root, where) + m["close"], text)


def stale(root: Path = REPO, write: bool = False) -> list[str]:
    """Documents whose generated regions differ from their sources (rewritten when ``write``)."""
    changed = []
    for doc in documents(root):
        if not doc.is_file():
            continue
        text = doc.read_text()
        new = render(text, root, str(doc.relative_to(root)))
        if new != text:
            changed.append(str(doc.relative_to(root)))
            if write:
                doc.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the regions (default: only check them)")
    args = parser.parse_args(argv)
    changed = stale(write=args.write)
    if changed and not args.write:
        print(
            "generated tables differ from their sources in: " + ", ".join(changed) + "\n"
            "run `python tools/docs_tables.py --write` and commit the result",
            file=sys.stderr,
        )
        return 1
    print(("rewrote: " + ", ".join(changed)) if changed else "every generated table matches its source")
    return 0


if __name__ == "__main__":
    sys.exit(main())

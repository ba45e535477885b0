"""Markdown tables in the AFD paper's formats, read from the typed :class:`EvaluationResults`."""

from __future__ import annotations

import math
from collections.abc import Sequence

from afd_lightning.evaluation.report.schema import EvaluationResults
from afd_lightning.files.escape import md_cell

BOUNDARY_EPS = 1.0  # Table A4 reports Boundary accuracy at L2 eps 1
ADAPTIVE = ("pgd_margin", "pgd_dlr", "pgd_embedding", "pgd_targeted")
# The paper's Table 1 after Clean: (header, attack name), at the training ε; afd-summarize uses the same columns.
TABLE1_COLUMNS = [
    ("PGD-L∞ (WB)", "pgd_linf"),
    ("FGSM (WB)", "fgsm"),
    ("PGD-L∞ (BB)", "pgd_linf_bb"),
    ("FGSM (BB)", "fgsm_bb"),
]


def _pct(p) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{100 * p:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table: a header row, its rule, one row per list.

    The one table writer of the package, benchmarks and tools. Cells may hold strings from files (model
    and recipe names, check details), so each is escaped (:func:`afd_lightning.files.escape.md_cell`): it
    stays one cell on one line and adds no link, code or HTML. Headers are ours and written as given.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _at(model, name: str, eps: float):
    c = model.attacks.get(name)
    return None if c is None else c.accuracy_at(eps)


def _other_linf_columns(results: EvaluationResults, shown: set[str]) -> list[tuple[str, str]]:
    """Every other L∞ attack that ran with a value at the table ε (APGD-CE, Square, strong PGD, the adaptive
    attacks...), in the suite's order: each attack a suite runs at this ε has its column."""
    eps = results.table_eps
    names = list(
        dict.fromkeys([a.name for a in results.attacks] + [n for m in results.models.values() for n in m.attacks])
    )
    cols = []
    for n in names:
        curves = [m.attacks[n] for m in results.models.values() if n in m.attacks]
        if n in shown or not curves or any(c.norm != "linf" for c in curves):
            continue
        if all(c.accuracy_at(eps) is None for c in curves):
            continue
        info = results.attack(n)
        cols.append(((info.label if info and info.label else curves[0].label) or n, n))
    return cols


def table1(results: EvaluationResults) -> str:
    """Clean, PGD-L∞ and FGSM at the training eps, white-box and black-box, plus AutoAttack (AA), the
    adaptive attacks and the per-sample worst case over every L∞ attack when they ran; in %."""
    eps = results.table_eps
    models = results.models.values()
    cols = list(TABLE1_COLUMNS)
    show_aa = any("autoattack" in m.attacks for m in models)
    if show_aa:
        cols.append(("AA", "autoattack"))
    cols += _other_linf_columns(results, {n for _, n in cols})
    show_wc = any(m.worst_case is not None and len(m.worst_case.attacks) > 1 for m in models)
    rows = []
    for name, m in results.models.items():
        row = [name, _pct(m.clean_accuracy)] + [_pct(_at(m, n, eps)) for _, n in cols]
        if show_wc:
            row.append(_pct(m.worst_case.accuracy) if m.worst_case else "–")
        rows.append(row)
    head = ["Model", "Clean"] + [label for label, _ in cols] + (["**Worst case**"] if show_wc else [])
    note = f"Table 1: accuracy (%) at ε = {eps:g} (L∞), n = {results.n_samples}"
    note += (
        f"; black-box: transferred from {results.source}"
        if results.source
        else "; black-box columns need source_ckpt=..."
    )
    if show_wc:
        note += (
            "; worst case: per sample, robust only if every L∞ attack at this ε failed (the robust accuracy to quote)"
        )
    if not show_aa:
        note += "; AA: run suite=autoattack or suite=full"
    return note + "\n\n" + markdown_table(head, rows)


def autoattack_breakdown(results: EvaluationResults) -> str | None:
    """Accuracy after each of AutoAttack's attacks in turn (APGD-CE → APGD-T → FAB-T → Square)."""
    rows, stages = [], []
    for name, m in results.models.items():
        c = m.attacks.get("autoattack")
        if c is None or not c.breakdown:
            continue
        stages = list(c.breakdown)
        for k, e in enumerate(c.eps):
            if e > 0:
                rows.append([name, f"{e:g}", _pct(c.accuracy[0])] + [_pct(c.breakdown[s][k]) for s in stages])
    if not rows:
        return None
    return (
        "AutoAttack breakdown: accuracy (%) after each attack, run in turn on the samples still standing "
        "(its log: autoattack.log)\n\n" + markdown_table(["Model", "ε", "Clean"] + [s.upper() for s in stages], rows)
    )


def table2(results: EvaluationResults) -> str:
    """Normalised AUC of each swept attack (Table 2); a perfectly robust model scores 1."""
    attacks = [a for a in results.attacks if a.auc_table and a.kind != "transfer" and sum(e > 0 for e in a.eps) >= 2]
    head = ["Model"] + [a.label for a in attacks]
    rows = []
    for name, m in results.models.items():
        row = [name]
        for a in attacks:
            c = m.attacks.get(a.name)
            row.append("–" if c is None or c.auc is None else f"{c.auc:.2f}")
        rows.append(row)
    eps = "; ".join(f"{a.label} {_eps_list(a.eps)}" for a in attacks)
    return f"Table 2: normalised AUC of accuracy vs ε (eps: {eps})\n\n" + markdown_table(head, rows)


def _eps_list(eps) -> str:
    return "[" + ", ".join(f"{e:.4g}" for e in eps) + "]"


def table_a4(results: EvaluationResults) -> str | None:
    """Boundary attack accuracy at L2 eps 1 (Table A4), in %."""
    rows = []
    for name, m in results.models.items():
        b = m.attacks.get("boundary")
        if b is not None:
            rows.append([name, _pct(b.accuracy_at(BOUNDARY_EPS)), b.n_samples])
    if not rows:
        return None
    return f"Table A4: Boundary attack, accuracy (%) at L2 ε = {BOUNDARY_EPS:g}\n\n" + markdown_table(
        ["Model", "Boundary", "n"], rows
    )


def table_a5(results: EvaluationResults) -> str | None:
    """Embedding units used and PCA dims for 99% of the variance (Table A5)."""
    rows = []
    for name, m in results.models.items():
        s = m.analyses.get("sparsity")
        if not s or "error" in s:
            continue
        rows.append([name, s["units"], s["pca_dims"], s["embed_dim"], s["n"]])
    if not rows:
        return None
    return "Table A5: embedding dimensionality\n\n" + markdown_table(
        ["Model", "Units", "Dims (99% var.)", "Embedding size", "n"], rows
    )


def curves_table(results: EvaluationResults) -> str:
    """Accuracy (%) at every eps of every attack, one block per attack (the data of Figures 2, A2-A4)."""
    blocks = []
    for a in results.attacks:
        # each curve under its own ε: a transfer attack runs at other ε than the white-box one it copies
        by_eps: dict[tuple, list[list[str]]] = {}
        for name, m in results.models.items():
            if a.name in m.attacks:
                curve = m.attacks[a.name]
                by_eps.setdefault(tuple(curve.eps), []).append([name] + [_pct(v) for v in curve.accuracy])
        for eps, rows in by_eps.items():
            head = ["Model"] + [f"{e:.4g}" for e in eps]
            blocks.append(f"{a.label} ({a.norm}), accuracy (%) vs ε\n\n" + markdown_table(head, rows))
    return "\n\n".join(blocks)


def checks_table(results: EvaluationResults) -> str:
    rows = []
    for name, m in results.models.items():
        for c in m.checks:
            verdict = {True: "pass", False: "**FAIL**", None: "n/a"}[c.passed]
            rows.append([name, c.name, verdict, c.details.replace("|", "/")])
    return "Honesty checks\n\n" + markdown_table(["Model", "Check", "Result", "Details"], rows)


def diagnostics_table(results: EvaluationResults) -> str | None:
    """Attack diagnostics: comparisons across attack classes, about the attacks and not counted as model failures."""
    rows = []
    for name, m in results.models.items():
        for c in m.diagnostics:
            verdict = {True: "as expected", False: "**differs**", None: "n/a"}[c.passed]
            rows.append([name, c.name, verdict, c.details.replace("|", "/")])
    if not rows:
        return None
    return (
        "Attack diagnostics (comparisons across attack classes: an embedding-space or targeted attack against "
        "an untargeted label-loss one, or a single step at least as long as the erase budget; they describe the "
        "attacks, not the model, and are not model failures)\n\n"
        + markdown_table(["Model", "Check", "Result", "Details"], rows)
    )


def summary(results: EvaluationResults) -> str:
    """Everything, as one markdown document (tables.md, and what the CLI prints at the end)."""
    parts = [
        table1(results),
        autoattack_breakdown(results),
        table2(results),
        table_a4(results),
        table_a5(results),
        checks_table(results),
        diagnostics_table(results),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"

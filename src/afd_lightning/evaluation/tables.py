"""Markdown tables in the AFD paper's formats, from an evaluation's ``results`` dict (results.json)."""
from __future__ import annotations

import math

BOUNDARY_EPS = 1.0  # Table A4 reports Boundary accuracy at L2 eps 1


def _pct(p) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{100 * p:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _at(entry: dict | None, eps: float):
    if not entry:
        return None
    if entry.get("min_norms") is not None:
        return None
    for e, a in zip(entry["eps"], entry["accuracy"]):
        if math.isclose(e, eps, rel_tol=1e-6, abs_tol=1e-9):
            return a
    return None


def table1(results: dict) -> str:
    """Clean, PGD-L∞ and FGSM at the training eps, white-box and black-box (transfer), in %."""
    eps = results["table_eps"]
    rows = []
    for name, m in results["models"].items():
        att = m["attacks"]
        rows.append([name, _pct(m["clean_accuracy"]), _pct(_at(att.get("pgd_linf"), eps)), _pct(_at(att.get("fgsm"), eps)),
                     _pct(_at(att.get("pgd_linf_bb"), eps)), _pct(_at(att.get("fgsm_bb"), eps))])
    head = ["Model", "Clean", "PGD-L∞ (WB)", "FGSM (WB)", "PGD-L∞ (BB)", "FGSM (BB)"]
    note = f"Table 1: accuracy (%) at ε = {eps:g} (L∞), n = {_n(results)}"
    if results.get("source"):
        note += f"; black-box: transferred from {results['source']}"
    else:
        note += "; black-box columns need source_ckpt=..."
    return note + "\n\n" + _table(head, rows)


def _n(results: dict) -> int:
    return results.get("n_samples", 0)


def table2(results: dict) -> str:
    """Normalised AUC of each swept attack (Table 2); a perfectly robust model scores 1."""
    attacks = [a for a in results["attacks"] if a.get("auc_table", True) and a["kind"] != "transfer"]
    head = ["Model"] + [a["label"] for a in attacks]
    rows = []
    for name, m in results["models"].items():
        row = [name]
        for a in attacks:
            auc = m["attacks"].get(a["name"], {}).get("auc")
            row.append("–" if auc is None else f"{auc:.2f}")
        rows.append(row)
    eps = "; ".join(f"{a['label']} {_eps_list(a['eps'])}" for a in attacks)
    return f"Table 2: normalised AUC of accuracy vs ε (eps: {eps})\n\n" + _table(head, rows)


def _eps_list(eps) -> str:
    return "[" + ", ".join(f"{e:.4g}" for e in eps) + "]"


def table_a4(results: dict) -> str | None:
    """Boundary attack accuracy at L2 eps 1 (Table A4), in %."""
    rows = []
    for name, m in results["models"].items():
        b = m["attacks"].get("boundary")
        if b is None:
            continue
        rows.append([name, _pct(b.get("accuracy_at_table_a4")), b["n_samples"]])
    if not rows:
        return None
    return f"Table A4: Boundary attack, accuracy (%) at L2 ε = {BOUNDARY_EPS:g}\n\n" + _table(["Model", "Boundary", "n"], rows)


def table_a5(results: dict) -> str | None:
    """Embedding units used and PCA dims for 99% of the variance (Table A5)."""
    rows = []
    for name, m in results["models"].items():
        s = (m.get("analyses") or {}).get("sparsity")
        if not s or "error" in s:
            continue
        rows.append([name, s["units"], s["pca_dims"], s["embed_dim"], s["n"]])
    if not rows:
        return None
    return "Table A5: embedding dimensionality\n\n" + _table(["Model", "Units", "Dims (99% var.)", "Embedding size", "n"], rows)


def curves_table(results: dict) -> str:
    """Accuracy (%) at every eps of every attack, one block per attack (the data of Figures 2, A2-A4)."""
    blocks = []
    for a in results["attacks"]:
        head = ["Model"] + [f"{e:.4g}" for e in a["eps"]]
        rows = []
        for name, m in results["models"].items():
            c = m["attacks"].get(a["name"])
            if c is not None:
                rows.append([name] + [_pct(v) for v in c["accuracy"]])
        blocks.append(f"{a['label']} ({a['norm']}), accuracy (%) vs ε\n\n" + _table(head, rows))
    return "\n\n".join(blocks)


def checks_table(results: dict) -> str:
    rows = []
    for name, m in results["models"].items():
        for c in m["checks"]:
            verdict = {True: "pass", False: "**FAIL**", None: "n/a"}[c["passed"]]
            rows.append([name, c["name"], verdict, c["detail"].replace("|", "/")])
    return "Honesty checks\n\n" + _table(["Model", "Check", "Result", "Details"], rows)


def summary(results: dict) -> str:
    """Everything, as one markdown document (tables.md, and what the CLI prints at the end)."""
    parts = [table1(results), table2(results), table_a4(results), table_a5(results), checks_table(results)]
    return "\n\n".join(p for p in parts if p) + "\n"

"""Evaluation output a person can read: Table 1 has a column for every L∞ attack that ran; legends list only
what was drawn."""

from __future__ import annotations

import pytest

from afd_lightning.evaluation.report import plots
from afd_lightning.evaluation.report.schema import AttackInfo, CurveRecord
from afd_lightning.evaluation.report.tables import table1

from helpers.schema import tiny_results


def quick_like():
    """tiny_results() as the quick suite makes it: PGD-L∞, FGSM, APGD-CE and Square, no AutoAttack."""
    results = tiny_results()
    results.attacks = [a for a in results.attacks if a.name != "autoattack"] + [
        AttackInfo("apgd_ce", "norm_ball", "linf", "APGD-CE", [0.0, 0.2], auc_table=False),
        AttackInfo("square", "norm_ball", "linf", "Square", [0.0, 0.2], auc_table=False, gradient_free=True),
        AttackInfo("pgd_l2", "norm_ball", "l2", "PGD-L2", [0.0, 0.5, 1.0]),
    ]
    for m in results.models.values():
        del m.attacks["autoattack"]
        m.attacks["apgd_ce"] = CurveRecord("apgd_ce", "linf", [0.0, 0.2], [0.98, 0.55], 4, "APGD-CE")
        m.attacks["square"] = CurveRecord("square", "linf", [0.0, 0.2], [0.98, 0.75], 4, "Square")
        m.attacks["pgd_l2"] = CurveRecord("pgd_l2", "l2", [0.0, 0.5, 1.0], [0.98, 0.5, 0.25], 4, "PGD-L2")
        m.worst_case = None
    return results


def test_quick_suite_table1_has_apgd_ce_and_square_columns():
    table = table1(quick_like())
    header = next(line for line in table.splitlines() if line.startswith("| Model"))
    assert header == "| Model | Clean | PGD-L∞ (WB) | FGSM (WB) | PGD-L∞ (BB) | FGSM (BB) | APGD-CE | Square |"
    assert "| NT | 98.00 | 8.00 | 80.00 | – | – | 55.00 | 75.00 |" in table  # APGD-CE, Square at eps 0.2
    assert "PGD-L2" not in header  # another norm has no value at the L∞ table eps (its AUC is in Table 2)


def test_autoattack_column_and_breakdown_still_there():
    header = next(line for line in table1(tiny_results()).splitlines() if line.startswith("| Model"))
    assert "| AA |" in header and header.count("AA") == 1


@pytest.mark.parametrize(
    ("make", "present", "absent"),
    [
        (quick_like, ["APGD-CE, Square (Table 1 ε)"], ["AutoAttack (Table 1 ε)", "worst case (Table 1 ε)"]),
        (tiny_results, ["AutoAttack (Table 1 ε)", "worst case (Table 1 ε)"], ["APGD-CE", "Square"]),
    ],
)
def test_legend_lists_only_what_ran(monkeypatch, tmp_path, make, present, absent):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or str(path))
    plots.plot_accuracy_vs_eps(make(), tmp_path / "accuracy.png")
    labels = [t.get_text() for legend in figures[0].legends for t in legend.get_texts()]
    for label in present:
        assert label in labels
    for label in absent:
        assert not any(label in text for text in labels), labels

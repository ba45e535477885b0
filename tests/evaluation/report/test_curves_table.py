"""curves.md: every curve is printed under its own ε (a transfer attack runs at other ε than its white-box twin)."""

from __future__ import annotations

from afd_lightning.evaluation.report.schema import AttackInfo, CurveRecord
from afd_lightning.evaluation.report.tables import curves_table

from helpers.schema import tiny_results


def _block(text: str, title: str) -> list[str]:
    block = text.split(title, 1)[1].split("\n\n")[1]
    return block.splitlines()


def test_black_box_values_sit_under_their_own_eps():
    results = tiny_results()
    # the transfer attack's AttackInfo carries the white-box ε list; its curves ran at 0 and the table ε only
    results.attacks.append(AttackInfo("pgd_linf_bb", "norm_ball", "linf", "PGD-L∞ (BB)", [0.0, 0.1, 0.2]))
    for model in results.models.values():
        model.attacks["pgd_linf_bb"] = CurveRecord("pgd_linf_bb", "linf", [0.0, 0.2], [0.98, 0.13], 4, "PGD-L∞ (BB)")
    lines = _block(curves_table(results), "PGD-L∞ (BB) (linf)")
    assert lines[0] == "| Model | 0 | 0.2 |"
    assert lines[2:] == ["| NT | 98.00 | 13.00 |", "| AFD | 98.00 | 13.00 |"]
    # the white-box block keeps its three ε
    assert _block(curves_table(results), "PGD-L∞ (linf)")[0] == "| Model | 0 | 0.1 | 0.2 |"


def test_models_run_at_different_eps_get_one_block_each():
    results = tiny_results()
    results.models["AFD"].attacks["fgsm"] = CurveRecord("fgsm", "linf", [0.0, 0.3], [0.98, 0.4], 4, "FGSM")
    text = curves_table(results)
    fgsm = text.split("FGSM (linf), accuracy (%) vs ε\n\n")[1:]
    heads = sorted(block.splitlines()[0] for block in fgsm)
    assert heads == ["| Model | 0 | 0.1 | 0.2 |", "| Model | 0 | 0.3 |"]
    assert "| AFD | 98.00 | 40.00 |" in text and "| NT | 98.00 | 90.00 | 80.00 |" in text

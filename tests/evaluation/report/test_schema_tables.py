"""The results schema round-trips through JSON, and the tables read it: AA, worst case, breakdown, n/a."""

from __future__ import annotations

import json

import pytest

from afd_lightning.evaluation.report import tables
from afd_lightning.evaluation.report import writer as report
from afd_lightning.evaluation.report.schema import SCHEMA_VERSION, EvaluationResults

from helpers.schema import tiny_results


def test_schema_round_trip_through_the_writer(tmp_path):
    results = tiny_results()
    report.write_json(tmp_path / "results.json", results.to_json())
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    curve = raw["models"]["AFD"]["attacks"]["pgd_linf"]
    assert {"attack", "norm", "eps", "accuracy"} <= set(curve)  # what other tools read
    assert set(raw["models"]["AFD"]["checks"][0]) == {"name", "passed", "details", "numbers"}
    assert EvaluationResults.load(tmp_path / "results.json") == results


def test_old_or_unknown_results_are_refused_clearly():
    data = tiny_results().to_json()
    with pytest.raises(ValueError, match="schema_version 1"):
        EvaluationResults.from_json({k: v for k, v in data.items() if k != "schema_version"})
    data["models"]["AFD"]["checks"][0]["detail"] = "the old key"
    with pytest.raises(ValueError, match="unknown fields.*detail"):
        EvaluationResults.from_json(data)


def test_table1_has_aa_and_worst_case_and_the_breakdown_is_listed():
    results = tiny_results()
    t1 = tables.table1(results)
    head = t1.splitlines()[2]
    assert "| AA |" in head and "Worst case" in head
    afd = next(line for line in t1.splitlines() if line.startswith("| AFD |"))
    assert afd.split("|")[-2].strip() == "40.00"  # worst case
    assert "50.00" in afd  # AutoAttack at 0.2
    breakdown = tables.autoattack_breakdown(results)
    assert "APGD-CE" in breakdown and "| AFD | 0.2 | 98.00 | 60.00 | 50.00 |" in breakdown
    # AutoAttack ran at one eps: no AUC column for it
    assert "AutoAttack" not in tables.table2(results)
    assert "| AFD | monotone_in_eps | n/a |" in tables.checks_table(results)


def test_table1_without_autoattack_says_how_to_get_it():
    results = tiny_results()
    for m in results.models.values():
        del m.attacks["autoattack"]
    assert "| AA |" not in tables.table1(results) and "suite=full" in tables.table1(results)

"""One generic reader for every record of the results schema: nested records, lists, dicts and optionals."""

from __future__ import annotations

import json

import pytest

from afd_lightning.evaluation.report.schema import (
    AttackInfo,
    CheckResult,
    CurveRecord,
    EvaluationResults,
    ModelRecord,
    WorstCase,
)
from afd_lightning.run.provenance import Provenance

from helpers.schema import tiny_results


def results() -> EvaluationResults:
    """Every kind of record: tiny_results' curves, checks and worst cases, plus diagnostics and provenance."""
    out = tiny_results()
    out.models["AFD"].diagnostics = [CheckResult("single_step", None, "n/a")]
    out.provenance = Provenance(
        version="0.1.0", commit=None, dirty=None, threads=1, threads_setting="1", device="cpu", seed=0, command="x"
    )
    return out


def test_json_round_trip_rebuilds_every_nested_record():
    original = results()
    back = EvaluationResults.from_json(json.loads(json.dumps(original.to_json())))
    assert back == original
    model = back.models["AFD"]
    assert isinstance(model, ModelRecord) and isinstance(model.attacks["pgd_linf"], CurveRecord)
    assert isinstance(model.checks[0], CheckResult) and isinstance(model.diagnostics[0], CheckResult)
    assert isinstance(model.worst_case, WorstCase) and isinstance(back.attacks[0], AttackInfo)
    assert isinstance(back.provenance, Provenance)
    assert model.attacks["autoattack"].breakdown == {"apgd-ce": [0.98, 0.6], "apgd-t": [0.98, 0.5]}
    assert model.attacks["pgd_linf"].accuracy_at(0.2 + 1e-12) == pytest.approx(0.68)


def test_unknown_fields_are_refused_at_any_depth():
    data = results().to_json()
    data["models"]["AFD"]["attacks"]["pgd_linf"]["detail"] = "typo of a field name"
    with pytest.raises(ValueError, match=r"CurveRecord: unknown fields \['detail'\]"):
        EvaluationResults.from_json(data)

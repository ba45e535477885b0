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
from afd_lightning.provenance import Provenance


def results() -> EvaluationResults:
    curve = CurveRecord(
        attack="pgd", norm="Linf", eps=[0.0, 0.1], accuracy=[1.0, 0.5], n_samples=2, breakdown={"apgd-ce": [0.5]}
    )
    model = ModelRecord(
        clean_accuracy=1.0,
        n_samples=2,
        attacks={"pgd": curve},
        checks=[CheckResult("clean_first", True, "ok", {"x": 1})],
        diagnostics=[CheckResult("single_step", None, "n/a")],
        worst_case=WorstCase(eps=0.1, accuracy=0.5, n_samples=2, attacks=["pgd"]),
    )
    provenance = Provenance(
        version="0.1.0", commit=None, dirty=None, threads=1, threads_setting="1", device="cpu", seed=0, command="x"
    )
    return EvaluationResults(
        complete=True,
        dataset="digits",
        family="digits",
        table_eps=0.1,
        n_samples=2,
        test_set_size=360,
        seed=0,
        sweep_mode="survivors",
        device="cpu",
        attacks=[AttackInfo("pgd", "norm_ball", "Linf", "PGD", [0.0, 0.1])],
        models={"AT": model},
        provenance=provenance,
    )


def test_json_round_trip_rebuilds_every_nested_record():
    original = results()
    back = EvaluationResults.from_json(json.loads(json.dumps(original.to_json())))
    assert back == original
    model = back.models["AT"]
    assert isinstance(model, ModelRecord) and isinstance(model.attacks["pgd"], CurveRecord)
    assert isinstance(model.checks[0], CheckResult) and isinstance(model.diagnostics[0], CheckResult)
    assert isinstance(model.worst_case, WorstCase) and isinstance(back.attacks[0], AttackInfo)
    assert isinstance(back.provenance, Provenance)
    assert model.attacks["pgd"].accuracy_at(0.1) == 0.5


def test_unknown_fields_are_refused_at_any_depth():
    data = results().to_json()
    data["models"]["AT"]["attacks"]["pgd"]["detail"] = "typo of a field name"
    with pytest.raises(ValueError, match=r"CurveRecord: unknown fields \['detail'\]"):
        EvaluationResults.from_json(data)

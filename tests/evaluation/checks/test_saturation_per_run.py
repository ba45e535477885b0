"""Saturation per run: results.json records it, afd-summarize aggregates it and plots the PGD − AA gap against it."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from afd_lightning.evaluation.report.schema import EvaluationResults, ModelRecord
from afd_lightning.evaluation.suite import ModelResult
from afd_lightning.evaluation.sweep import Curve
from afd_lightning.summarize import cli as summarize


def _curve(name, robust_at_02):
    n = len(robust_at_02)
    robust = torch.stack([torch.ones(n, dtype=torch.bool), torch.tensor(robust_at_02)])
    return Curve(name, "linf", [0.0, 0.2], robust, torch.arange(n))


def test_model_record_has_fractions_and_gap():
    n = 10
    res = ModelResult("m", 1.0, torch.ones(n, dtype=torch.bool), table_eps=0.2)
    res.curves = {
        "pgd_linf": _curve("pgd_linf", [True] * 8 + [False] * 2),
        "autoattack": _curve("aa", [True] * 5 + [False] * 5),
    }
    res.attacks = {k: {"label": k, "kind": "norm_ball"} for k in res.curves}
    res.saturation = {"n_correct": n, "p_one": 4, "grad_below": 3, "saturated": 5, "grad_threshold": 1e-8}
    rec = res.record()
    assert rec.p_one_fraction == pytest.approx(0.4) and rec.grad_below_fraction == pytest.approx(0.3)
    assert rec.pgd_aa_gap == pytest.approx(0.3)  # PGD 80% - AA 50%
    res.curves.pop("autoattack")
    assert res.record().pgd_aa_gap is None  # no AutoAttack: no gap, not a made-up zero


def _run_folder(root, name, recipe_method, seed, p_one, grad_below, gap):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    cfg = {
        "seed": seed,
        "method": {"_target_": f"afd_lightning.methods.{recipe_method}"},
        "model": {"_target_": "afd_lightning.nets.resnet5"},
        "dataset": {"meta": {"name": "digits", "family": "digits"}},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "metrics.json").write_text(json.dumps({"test/acc_clean": 0.9}))
    results = EvaluationResults(
        complete=True,
        dataset="digits",
        family="digits",
        table_eps=0.2,
        n_samples=200,
        test_set_size=360,
        seed=0,
        sweep_mode="survivors",
        device="cpu",
        models={"m": ModelRecord(0.9, 200, p_one_fraction=p_one, grad_below_fraction=grad_below, pgd_aa_gap=gap)},
    )
    (run / "eval").mkdir()
    (run / "eval" / "results.json").write_text(json.dumps(results.to_json()))


@pytest.mark.slow
def test_summarize_aggregates_saturation_and_plots_gap_against_it(tmp_path):
    root = tmp_path / "sweep"
    _run_folder(root, "0", "AFD", 0, 0.50, 0.30, 0.16)
    _run_folder(root, "1", "AFD", 1, 0.40, 0.20, 0.12)
    _run_folder(root, "2", "AdversarialTraining", 0, 0.0, 0.0, 0.12)
    rows = summarize.run(root)
    afd = next(r for r in rows if r["method"] == "AFD")
    assert afd["columns"]["p_one"]["mean"] == pytest.approx(45.0)
    assert afd["columns"]["grad_below"]["values"] == [30.0, 20.0]
    assert afd["columns"]["pgd_aa_gap"]["mean"] == pytest.approx(14.0)
    assert "PGD − AA" in (root / "summary.md").read_text()
    png = root / "gap_vs_saturation.png"
    assert png.is_file() and png.stat().st_size > 5000
    runs = summarize.find_runs(root)
    summarize.attach_evaluations(root, runs)
    from afd_lightning.evaluation.report.saturation_gap import points

    pts = points(runs)
    assert sum(len(v) for v in pts.values()) == 3 and len(pts) == 2  # one point per run, one colour per recipe

"""eval.py's results.json carries its provenance (code, versions, threads, device, seed, command, wall time)."""

from __future__ import annotations

import json

import pytest
import torch

from afd_lightning.evaluate import run
from afd_lightning.evaluation.report.schema import EvaluationResults
from afd_lightning.run.provenance import Provenance

from helpers.evaluation import compose_eval


@pytest.mark.slow
def test_results_json_records_provenance(nt_ckpt, tmp_path):  # noqa: F811
    out = tmp_path / "eval"
    overrides = [f"ckpt_path={nt_ckpt}", "attack=fgsm", "attack.eps=[0,0.2]", "n_samples=20", "seed=4", "threads=1"]
    run(compose_eval(overrides, out))
    saved = json.loads((out / "results.json").read_text())["provenance"]
    assert saved["seed"] == 4 and saved["threads"] == 1 == torch.get_num_threads() and saved["threads_setting"] == "1"
    assert saved["device"] == "cpu" and saved["commit"] and saved["wall_s"] > 0
    assert saved["versions"]["torch"] == str(torch.__version__)
    loaded = EvaluationResults.load(out / "results.json")
    assert isinstance(loaded.provenance, Provenance) and loaded.provenance.to_json() == saved

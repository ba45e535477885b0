"""eval.py's W&B logging: offline without credentials, every figure and table in the run."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from afd_lightning.evaluation.wandb_log import curve_rows, log_evaluation

RESULTS = {
    "checkpoints": {"AFD": "afd.ckpt"}, "dataset": "digits", "n_samples": 4, "seed": 0,
    "models": {
        "AFD": {
            "clean_accuracy": 1.0,
            "attacks": {"fgsm": {"norm": "linf", "eps": [0.0, 0.2], "accuracy": [1.0, 0.5], "auc": 0.75}},
            "checks": [{"name": "monotone_in_eps", "passed": True, "details": "ok"}],
        }
    },
}


def test_curve_rows_flatten_every_model_attack_and_eps():
    assert curve_rows(RESULTS) == [["AFD", "fgsm", "linf", 0.0, 1.0], ["AFD", "fgsm", "linf", 0.2, 0.5]]


def test_log_evaluation_offline_writes_a_run_with_the_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "accuracy_vs_eps.png")
    plt.close(fig)
    assert log_evaluation(tmp_path, RESULTS, mode="auto") == "offline"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = list(runs[0].rglob("*.png")) + list(runs[0].rglob("*.wandb"))
    assert logged, "the offline run holds no data"

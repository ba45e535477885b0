"""eval.py's W&B logging: offline without credentials, every figure and table in the run, read from the schema."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from afd_lightning.evaluation.report.wandb_log import check_rows, curve_rows, log_evaluation

from helpers.schema import tiny_results


def test_curve_and_check_rows_come_from_the_schema():
    results = tiny_results()
    rows = curve_rows(results)
    assert ["AFD", "pgd_linf", "linf", 0.2, results.models["AFD"].attacks["pgd_linf"].accuracy[-1]] in rows
    assert len(rows) == 2 * (3 + 3 + 2)
    # the details column carries the check's text (it was always empty when readers guessed the key)
    assert ["AFD", "pgd_linf_not_beaten", "FAIL", "details of the check"] in check_rows(results)


@pytest.mark.slow
def test_log_evaluation_offline_writes_a_run_with_the_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "accuracy_vs_eps.png")
    plt.close(fig)
    assert log_evaluation(tmp_path, tiny_results(), mode="auto") == "offline"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = list(runs[0].rglob("*.png")) + list(runs[0].rglob("*.wandb"))
    assert logged, "the offline run holds no data"

"""An empty WANDB_MODE= in the environment counts as unset (wandb.init would fail on it)."""

from __future__ import annotations

import os

import pytest

from afd_lightning.run.loggers import resolve_wandb_mode, wandb_logger


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_wandb_mode_counts_as_unset(monkeypatch, tmp_path, value):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials: auto means offline
    monkeypatch.setenv("WANDB_MODE", value)
    assert resolve_wandb_mode("auto") == "offline"
    assert "WANDB_MODE" not in os.environ


@pytest.mark.slow
def test_wandb_run_starts_with_an_empty_wandb_mode(monkeypatch, tmp_path):
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "")
    logger = wandb_logger(project="afd-test", save_dir=str(tmp_path / "wandb"), group=None, log_model=False)
    try:
        assert logger.experiment.settings.mode == "offline"  # wandb.init ran
    finally:
        wandb.finish()
        wandb.teardown()
    assert list((tmp_path / "wandb").rglob("offline-run-*"))

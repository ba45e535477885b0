"""Issue 30.12: a checkpoint written by an older main (a893f0c, before ``attack.warmup_epochs`` existed) loads,
evaluates and resumes: a recipe key added later compares equal to its absence when its default gives the old
behaviour."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import afd_lightning
from afd_lightning import train as train_mod
from afd_lightning.evaluate import run as evaluate
from afd_lightning.store.checkpoint import load_checkpoint

from helpers.compose import compose_train
from helpers.evaluation import compose_eval

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "a893f0c_at_digits.ckpt"


def test_the_fixture_predates_warmup_epochs():
    stored = load_checkpoint(OLD)
    assert "warmup_epochs" not in stored["hyper_parameters"]["attack"]
    assert "provenance" not in stored["afd_lightning"]  # written before runs recorded their provenance


@pytest.mark.slow
def test_an_old_checkpoint_loads_and_evaluates(tmp_path):
    model = afd_lightning.load_classifier(OLD)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    results = evaluate(compose_eval([f"ckpt_path={OLD}", "attack=fgsm", "n_samples=8"], tmp_path / "eval"))
    (only,) = results.models.values()
    assert only.clean_accuracy is not None and (tmp_path / "eval" / "results.json").is_file()


@pytest.mark.slow
def test_an_old_checkpoint_resumes(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    shutil.copyfile(OLD, ckpt)
    # the overrides the old run was made with (tests/fixtures/README.md), one more epoch
    overrides = ["method=at", "threads=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1"]
    quiet = ["test_after_fit=false", "logger=csv", "trainer.enable_progress_bar=false"]
    train_mod.run(compose_train([*overrides, *quiet, f"ckpt_path={ckpt}", "trainer.max_epochs=2"], run_dir, fast=False))
    resumed = load_checkpoint(ckpt)
    assert resumed["epoch"] == 1 and resumed["global_step"] > load_checkpoint(OLD)["global_step"]

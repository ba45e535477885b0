"""The run config has one owner (afd_lightning.config.run_config): stored once per checkpoint, read back from new and
old checkpoints alike, and one rule for which keys are the recipe.

Checkpoints written before the change carry a second copy under ``checkpoint["afd_lightning"]["config"]``
and no ``dataset.meta.family``; the old-layout file here is a fresh checkpoint given exactly that.
"""

from __future__ import annotations

import copy

import pytest
import torch

import afd_lightning
from afd_lightning import train as train_mod
from afd_lightning.config import run_config
from afd_lightning.errors import CheckpointError
from afd_lightning.evaluation.loading import LoadedModel
from afd_lightning.methods import NaturalTraining, RobustMethod
from afd_lightning.store.checkpoint import load_checkpoint

from helpers.compose import compose_train

TINY = ["method=nt", "+trainer.limit_train_batches=2", "test_after_fit=false"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A one-epoch NT run's last.ckpt, written by the current code."""
    run_dir = tmp_path_factory.mktemp("fresh") / "run"
    train_mod.run(compose_train(TINY, run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def old_layout(fresh, path):
    """``fresh`` as a file written before the change: the config twice, no ``dataset.meta.family``."""
    checkpoint = torch.load(fresh, map_location="cpu", weights_only=True)
    del checkpoint["hyper_parameters"]["dataset"]["meta"]["family"]
    checkpoint["afd_lightning"]["config"] = copy.deepcopy(dict(checkpoint["hyper_parameters"]))
    torch.save(checkpoint, path)
    return path


@pytest.mark.slow
def test_a_checkpoint_stores_the_run_config_once(fresh):
    checkpoint = load_checkpoint(fresh)
    assert "config" not in checkpoint["afd_lightning"]
    assert checkpoint["hyper_parameters"]["method"]["_target_"] == "afd_lightning.methods.NaturalTraining"
    assert checkpoint["hyper_parameters"]["dataset"]["meta"]["family"] == "digits"
    assert run_config.from_checkpoint(checkpoint) == dict(checkpoint["hyper_parameters"])


@pytest.mark.slow
def test_an_old_layout_checkpoint_loads_evaluates_and_resumes_like_a_new_one(fresh, tmp_path):
    old = old_layout(fresh, tmp_path / "old.ckpt")
    config = run_config.from_checkpoint(load_checkpoint(old), old)
    assert config["dataset"]["meta"]["family"] == "digits"  # filled in from conf/train/dataset/digits.yaml

    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(afd_lightning.load_classifier(old)(x), afd_lightning.load_classifier(fresh)(x))
    method = RobustMethod.load_from_checkpoint(old)
    assert isinstance(method, NaturalTraining) and method.run_config["dataset"]["meta"]["family"] == "digits"
    assert LoadedModel(str(old)).name == "NT"

    # Resuming passes the recipe check and continues exactly as from the new layout.
    weights = {}
    for name, ckpt in (("old", old), ("new", fresh)):
        out = tmp_path / f"resumed_{name}"
        train_mod.run(compose_train([*TINY, "trainer.max_epochs=2", f"ckpt_path={ckpt}"], out))
        last = load_checkpoint(out / "checkpoints" / "last.ckpt")
        assert last["epoch"] == 1 and "config" not in last["afd_lightning"]
        weights[name] = last["state_dict"]
    assert weights["old"].keys() == weights["new"].keys()
    assert all(torch.equal(weights["old"][k], weights["new"][k]) for k in weights["new"])


@pytest.mark.slow
def test_the_old_copy_is_read_when_hyper_parameters_hold_no_run_config(fresh):
    checkpoint = load_checkpoint(fresh)
    config = dict(checkpoint.pop("hyper_parameters"))
    assert run_config.from_checkpoint({**checkpoint, "afd_lightning": {"config": config}}) == config
    with pytest.raises(CheckpointError, match=r"x\.ckpt was not written by afd-lightning's train.py"):
        run_config.from_checkpoint({**checkpoint, "afd_lightning": {"method": "AFD"}}, "x.ckpt")


def test_the_evaluation_reads_each_checkpoint_once(fresh, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a[0]) or real_load(*a, **k))
    loaded = LoadedModel(str(fresh))
    assert len(calls) == 1 and loaded.name == "NT" and loaded.method == "NaturalTraining"


@pytest.mark.slow
def test_runtime_keys_are_free_on_resume_and_recipe_keys_are_not():
    stored = compose_train(["method=at"])
    now = compose_train(
        [
            "method=at",
            "model.channels_last=true",
            "dataset.num_workers=2",
            "dataset.batch_size=7",
            "dataset.meta.eval_attack_steps=5",
            "trainer.max_epochs=9",
        ]
    )
    assert run_config.recipe_differences(run_config.current_recipe(stored), run_config.current_recipe(now)) == []
    now.method.optimizer.lr = 0.05
    now.dataset.split_seed = 3
    assert run_config.recipe_differences(run_config.current_recipe(stored), run_config.current_recipe(now)) == [
        "method.optimizer.lr: stored 0.1, now 0.05",
        "dataset.split_seed: stored 0, now 3",
    ]
    assert run_config.runtime_keys("model") == ("channels_last", "compile")


@pytest.mark.parametrize(
    ("override", "recipe"),
    [
        ("method.optimizer.lr=0.05", True),
        ("dataset.batch_size=128", True),  # changes what is learned, though a resume may change it
        ("trainer.max_epochs=30", True),
        ("seed=3", False),
        ("threads=1", False),
        ("model.channels_last=true", False),
        ("dataset.num_workers=8", False),
        ("+logger.wandb.offline=true", False),
        ("hydra.run.dir=x", False),
    ],
)
def test_which_overrides_make_another_recipe(override, recipe):
    assert run_config.is_recipe_override(override) is recipe

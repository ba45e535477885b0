"""Issue 27, breaks 7 and 10 (the resume part), and issue 30, item 12: what a resume reads.

* Read once: the checkpoint a resume verified is the one Lightning restores, in memory; a file swapped in at its
  path after the checks (here: right after the run directory's checks, before ``trainer.fit``) is never read.
* One line per refusal: state Lightning restores (loops, callbacks, optimizers, schedulers) in the wrong shape,
  or nested past the bound, ends in an ``AFDUserError`` naming the key before training starts, not a
  ``KeyError``/``TypeError``/``RecursionError`` from inside Lightning or torch.
* A stored config written before ``attack.warmup_epochs`` existed resumes (absent == 0); another value does not.

One real run (NT on digits, one training and one validation batch) makes the genuine checkpoint all tests use.
"""

from __future__ import annotations

import copy
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from afd_lightning import train as train_mod
from afd_lightning.config import run_config
from afd_lightning.errors import AFDUserError
from afd_lightning.run.rundir import check_recipe
from afd_lightning.store.resume import check_resume_state

from helpers.compose import compose_train
from helpers.training import Recorder

ONE_BATCH = ["method=nt", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1", "test_after_fit=false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """last.ckpt of a finished one-batch run."""
    run_dir = tmp_path_factory.mktemp("first") / "run"
    train_mod.run(compose_train(ONE_BATCH, run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def built(finished, tmp_path_factory):
    """(datamodule, method, trainer) of the resumed run, built as train.run builds them (nothing is fitted)."""
    cfg = compose_train([*ONE_BATCH, f"ckpt_path={finished}"], tmp_path_factory.mktemp("resumed") / "run")
    return train_mod.build(cfg)


def loaded(path: Path) -> dict:
    return torch.load(path, weights_only=False)  # a file this test wrote itself


def resume_cfg(tmp_path, ckpt, *overrides):
    return compose_train([*ONE_BATCH, f"ckpt_path={ckpt}", "trainer.max_epochs=2", *overrides], tmp_path / "resumed")


# ------------------------------------------------------------------------------------- 10. read once
def swapped_copy(checkpoint: dict, path: Path) -> None:
    """``checkpoint`` with every weight multiplied by -3, saved at ``path``, its largest member's CRC broken."""
    other = copy.deepcopy(checkpoint)
    other["state_dict"] = {k: v * -3 if v.is_floating_point() else v for k, v in other["state_dict"].items()}
    torch.save(other, path)
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
        offset = member.header_offset + 30 + len(member.filename) + len(member.extra) + 8
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = bytes(4)  # a CRC failure of its own: never a file the checks would pass
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_checkpoint_swapped_after_its_checks_is_never_trained_on(tmp_path, finished, monkeypatch):
    ckpt = tmp_path / "resume.ckpt"
    ckpt.write_bytes(finished.read_bytes())
    verified = loaded(ckpt)
    swap = tmp_path / "swap.ckpt"
    swapped_copy(verified, swap)
    recorder = Recorder()
    real_build = train_mod.build

    def build(cfg):  # runs after RunDirectory verified the checkpoint, before trainer.fit reads it
        datamodule, method, trainer = real_build(cfg)
        trainer.callbacks.insert(0, recorder)
        swap.replace(ckpt)
        return datamodule, method, trainer

    monkeypatch.setattr(train_mod, "build", build)
    train_mod.run(resume_cfg(tmp_path, ckpt))
    started = recorder.start["state_dict"]
    for key, value in verified["state_dict"].items():
        assert torch.equal(started[key], value), f"{key}: the resume trained on the file swapped in after its checks"


# ------------------------------------------------------------------------------------- 7. one line each
def edit_and_save(finished: Path, tmp_path: Path, edit) -> tuple[dict, Path]:
    checkpoint = loaded(finished)
    edit(checkpoint)
    path = tmp_path / "crafted.ckpt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # torch.save pickles recursively; the crafted nesting needs room to be written
    try:
        torch.save(checkpoint, path)
    finally:
        sys.setrecursionlimit(limit)
    return checkpoint, path


def deep(levels: int):
    value: list = [0.5]
    for _ in range(levels):
        value = [value]
    return value


SHAPES = {
    "loop progress without a key": (
        lambda c: c["loops"]["fit_loop"]["epoch_loop.state_dict"].clear(),
        "loops.fit_loop.epoch_loop.state_dict",
    ),
    "a string as loop progress": (lambda c: c["loops"]["fit_loop"].update({"epoch_progress": "x"}), "epoch_progress"),
    "a random state of the wrong layout": (
        lambda c: c["callbacks"]["ExactResume"]["rng"].update(torch=torch.zeros(3)),
        "ExactResume",
    ),
    "a momentum buffer of the wrong shape": (
        lambda c: c["optimizer_states"][0]["state"][0].update(momentum_buffer=torch.zeros(2)),
        "optimizer_states[0].state[0].momentum_buffer",
    ),
    "a missing optimizer state": (lambda c: c["optimizer_states"].clear(), "optimizer_states"),
    "milestones as a string": (lambda c: c["lr_schedulers"][0].update(milestones="20"), "lr_schedulers[0].milestones"),
    "callbacks as a list": (lambda c: c.update(callbacks=[1]), "callbacks"),
}


@pytest.mark.parametrize("case", list(SHAPES))
@pytest.mark.slow
def test_a_wrongly_shaped_state_is_refused_naming_the_key(case, finished, built, tmp_path):
    edit, fragment = SHAPES[case]
    checkpoint, path = edit_and_save(finished, tmp_path, edit)
    _, method, trainer = built
    with pytest.raises(AFDUserError) as info:
        check_resume_state(checkpoint, path, trainer, method)
        for callback in trainer.callbacks:  # what Lightning does next with the callback states
            if callback.state_key in checkpoint["callbacks"]:
                callback.load_state_dict(checkpoint["callbacks"][callback.state_key])
    assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda c: c["hyper_parameters"]["model"].update(mean=deep(900)), "hyper_parameters.model.mean"),
        (lambda c: c["lr_schedulers"][0].update(milestones={"a": "b"}), "lr_schedulers[0].milestones"),
        (lambda c: c.update(afd_lightning=["NaturalTraining"]), "afd_lightning"),
        (lambda c: c.update(epoch="3"), "epoch"),
    ],
)
@pytest.mark.slow
def test_a_resume_of_a_crafted_checkpoint_ends_in_one_line_before_training(finished, tmp_path, edit, fragment):
    _, path = edit_and_save(finished, tmp_path, edit)
    with pytest.raises(AFDUserError) as info:
        train_mod.run(resume_cfg(tmp_path, path))
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "resumed" / "checkpoints").exists(), "training started"


# ------------------------------------------------------------------------------------- 30.12 recipe keys
@pytest.mark.slow
def test_a_checkpoint_written_before_warmup_epochs_existed_has_the_same_recipe(finished, tmp_path):
    """main a893f0c wrote no attack.warmup_epochs (its attack configs differ from today's by this key alone)."""
    checkpoint = loaded(finished)
    for config in (checkpoint["hyper_parameters"], checkpoint.get("afd_lightning", {}).get("config") or {}):
        config.get("attack", {}).pop("warmup_epochs", None)
    assert "warmup_epochs" not in checkpoint["hyper_parameters"]["attack"]
    path = tmp_path / "old.ckpt"
    check_recipe(checkpoint, str(path), resume_cfg(tmp_path, path))  # absent == 0: no difference
    with pytest.raises(AFDUserError, match=r"attack\.warmup_epochs: stored '<absent>', now 2"):
        check_recipe(checkpoint, str(path), resume_cfg(tmp_path, path, "attack.warmup_epochs=2"))
    stored = run_config.from_checkpoint(checkpoint)
    assert run_config.recipe_differences({"attack": {"warmup_epochs": 0}}, {"attack": {}}) == []
    assert run_config.recipe_differences(stored, {**stored, "attack": {**stored["attack"], "warmup_epochs": 1}})

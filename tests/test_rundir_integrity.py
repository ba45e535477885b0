"""Run directories and checkpoints keep their integrity: resumed paths stay inside the run, corrupt files
are refused, one run per directory, no silent replacement, resumes that match their checkpoint, CSV
history kept, no checkpoint with NaN/inf weights, and the Lightning internals exact resume relies on.

In-process runs use NT or AT on digits with a few batches (the cheapest real runs); the preemption
test drives ``train.py`` in a subprocess (a real signal, a real exit status).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import afd_lightning
from afd_lightning import train as train_mod
from afd_lightning.callbacks import CheckpointPathGuard
from afd_lightning.callbacks.checkpoint_path_guard import sanitize_callback_state
from afd_lightning.callbacks.finite import NonFiniteModelError
from afd_lightning.callbacks.resume import epoch_iterator
from afd_lightning.config import run_config
from afd_lightning.errors import ConfigError, NonFiniteLossError
from afd_lightning.run import rundir
from afd_lightning.run.rundir import RunDirectoryError
from afd_lightning.store.checkpoint import CheckpointError, load_checkpoint

from helpers.compose import FAST, compose_train
from helpers.reliability import FailAt, Interrupted, finish, pause_at, start, wait_for

TINY = ["+trainer.limit_train_batches=2", "test_after_fit=false"]


def tiny(run_dir: Path, *overrides: str, method: str = "nt"):
    return compose_train([f"method={method}", *TINY, *overrides], run_dir)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def csv_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch AT run (shared, read-only: tests copy what they change)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train_mod.run(tiny(run_dir, method="at"))
    return run_dir


# ------------------------------------------------------------ 1. resumed paths stay inside the run
@pytest.mark.slow
def test_resume_cannot_delete_outside_the_run_directory(tmp_path):
    run_dir, victim = tmp_path / "run", tmp_path / "victim"
    train_mod.run(tiny(run_dir))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    escape = f"{run_dir}/checkpoints/../../victim"  # = tmp_path/victim once normalised
    for name, state in checkpoint["callbacks"].items():
        if name.startswith("ModelCheckpoint"):
            state.update(
                best_model_path=escape,
                kth_best_model_path=escape,
                last_model_path=escape,
                best_k_models={escape: torch.tensor(-1.0)},
                best_model_score=torch.tensor(-1.0),
            )
    crafted = run_dir / "checkpoints" / "crafted.ckpt"
    torch.save(checkpoint, crafted)

    def plant():
        victim.mkdir(exist_ok=True)
        (victim / "precious.txt").write_text("keep me\n")

    plant()
    with pytest.warns(
        UserWarning,
        match=r"ignored the checkpoint path\(s\) '.*/checkpoints/\.\./\.\./victim'.*not \.ckpt files in this run's checkpoint",
    ):
        train_mod.run(tiny(run_dir, f"ckpt_path={crafted}", "trainer.max_epochs=2"))
    assert (victim / "precious.txt").read_text() == "keep me\n"
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1  # it did train and save

    # Control: the same resume without the guard deletes the victim (Lightning 2.6 does not normalise '..').
    cfg = tiny(run_dir, f"ckpt_path={crafted}", "trainer.max_epochs=2")
    datamodule, method, trainer = train_mod.build(cfg)
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, CheckpointPathGuard)]
    trainer.fit(method, datamodule=datamodule, ckpt_path=str(crafted))
    assert not victim.exists()


def test_paths_inside_the_run_directory_are_kept(tmp_path):
    run_dir = (tmp_path / "run").resolve()
    best = f"{run_dir}/checkpoints/best.ckpt"
    state = {
        "best_model_path": best,
        "kth_best_model_path": best,
        "dirpath": f"{run_dir}/checkpoints",
        "last_model_path": "s3://bucket/last.ckpt",
        "best_k_models": {best: 0.5},
        "kth_value": 0.5,
    }
    assert sanitize_callback_state(state, run_dir / "checkpoints") == ["s3://bucket/last.ckpt"]
    assert state == {
        "best_model_path": best,
        "kth_best_model_path": best,
        "dirpath": f"{run_dir}/checkpoints",
        "last_model_path": "",
        "best_k_models": {best: 0.5},
        "kth_value": 0.5,
    }
    other = f"{tmp_path}/other/checkpoints/best.ckpt"
    state = {"best_model_path": best, "kth_best_model_path": other, "best_k_models": {other: 0.4, best: 0.5}}
    assert sanitize_callback_state(state, run_dir / "checkpoints") == [other, other]
    assert state == {"best_model_path": best, "kth_best_model_path": "", "best_k_models": {}}


# ---------------------------------------------------------------------- 2. corrupt tensor data
def overwrite_tensor_bytes(source: Path, target: Path) -> str:
    """A copy of ``source`` with 64 bytes changed in the middle of its largest tensor; returns the member's name."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
    header = member.header_offset
    name_len, extra_len = (int.from_bytes(data[header + o : header + o + 2], "little") for o in (26, 28))
    middle = header + 30 + name_len + extra_len + member.file_size // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    target.write_bytes(bytes(data))
    return member.filename


@pytest.mark.slow
def test_corrupt_tensor_data_is_refused_naming_the_file(tmp_path, finished):
    corrupt = tmp_path / "corrupt.ckpt"
    member = overwrite_tensor_bytes(finished / "checkpoints" / "last.ckpt", corrupt)
    assert "/data/" in member
    torch.load(corrupt, weights_only=False)  # control: torch itself loads the damaged file silently

    pattern = rf"{re.escape(str(corrupt))} is corrupt: the CRC check of its member '{re.escape(member)}' failed"
    with pytest.raises(CheckpointError, match=pattern):
        afd_lightning.load_classifier(corrupt)
    with pytest.raises(CheckpointError, match=pattern):
        train_mod.run(tiny(tmp_path / "resumed", f"ckpt_path={corrupt}", method="at"))
    assert not (tmp_path / "resumed" / "checkpoints").exists()


def test_a_directory_as_checkpoint_gets_its_own_message(finished):
    with pytest.raises(CheckpointError, match=r"is a directory; pass a \.ckpt file in it, e.g. .*last\.ckpt"):
        load_checkpoint(finished / "checkpoints")


# ------------------------------------------------------------------------ 3. one run per directory
@pytest.mark.slow
def test_a_live_lock_refuses_a_second_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = rundir.RunLock(run_dir)
        (run_dir / ".lock").write_text(f'{{"pid": {holder.pid}, "host": "{lock._me()["host"]}", "started": "now"}}\n')
        with pytest.raises(RunDirectoryError, match=rf"in use by process {holder.pid} on host .*lock file"):
            train_mod.run(tiny(run_dir))
        assert not (run_dir / "checkpoints").exists() and not (run_dir / "csv").exists()
        assert str(holder.pid) in (run_dir / ".lock").read_text()  # someone else's lock is left alone
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_stale_lock_is_replaced_and_the_lock_is_removed_at_the_end(tmp_path, caplog, runner):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = rundir.RunLock(run_dir)._me()["host"]
    (run_dir / ".lock").write_text(f'{{"pid": {dead.pid}, "host": "{host}", "started": "earlier"}}\n')

    seen: dict = {}

    class ReadLock(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["lock"] = (run_dir / ".lock").read_text()

    with caplog.at_level(logging.WARNING, logger="afd_lightning.run.rundir"):
        runner(tiny(run_dir), ReadLock())
    assert f"process {dead.pid} is no longer running" in caplog.text
    assert f'"pid": {os.getpid()}' in seen["lock"]  # held by this run while it trained
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow
def test_the_lock_is_removed_when_the_run_fails(tmp_path, runner):
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        runner(tiny(run_dir), FailAt(epoch=0, batch=1))
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow
def test_only_global_rank_zero_takes_the_lock(monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert rundir.is_global_rank_zero()
    cases = [  # (the rank Lightning read from the launcher's variables at import, those variables, expected)
        (1, {"LOCAL_RANK": "1"}, False),
        (0, {"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        (0, {"LOCAL_RANK": "0", "GROUP_RANK": "2"}, False),
        (0, {"RANK": "0", "LOCAL_RANK": "0"}, True),
        (3, {"RANK": "3"}, False),
        (2, {"SLURM_PROCID": "2"}, False),
    ]
    for rank, env, expected in cases:
        with monkeypatch.context() as m:
            m.setattr(rank_zero_only, "rank", rank)
            for key, value in env.items():
                m.setenv(key, value)
            assert rundir.is_global_rank_zero() is expected, env
    # Lightning reads the variables when it is imported: a process started as local rank 1 is not rank zero.
    for env, expected in (({"LOCAL_RANK": "1"}, "False"), ({"SLURM_PROCID": "0"}, "True")):
        done = subprocess.run(
            [sys.executable, "-c", "from afd_lightning.run import rundir; print(rundir.is_global_rank_zero())"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stdout.strip() == expected, done.stderr


# ----------------------------------------------------------------- 4. no silent replacement
@pytest.mark.slow
def test_a_directory_holding_a_run_is_refused_unless_overwrite(tmp_path):
    run_dir = tmp_path / "run"
    train_mod.run(tiny(run_dir))
    old_last = sha256(run_dir / "checkpoints" / "last.ckpt")
    old_metrics = (run_dir / "metrics.json").read_text()
    with pytest.raises(RunDirectoryError, match=r"already holds a run \(checkpoints/best\.ckpt.*metrics\.json") as info:
        train_mod.run(tiny(run_dir))
    assert "ckpt_path=" in str(info.value) and "overwrite=true" in str(info.value)
    assert sha256(run_dir / "checkpoints" / "last.ckpt") == old_last

    train_mod.run(tiny(run_dir, "overwrite=true", "seed=1"))
    (aside,) = run_dir.glob("overwritten-*")
    assert sha256(aside / "checkpoints" / "last.ckpt") == old_last
    assert (aside / "metrics.json").read_text() == old_metrics and (aside / "csv" / "metrics.csv").is_file()
    assert sha256(run_dir / "checkpoints" / "last.ckpt") != old_last  # the new run's


# --------------------------------------------------------------------- 5. resumes that match
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["dataset.split_seed=1"], "dataset.split_seed: stored 0, now 1"),
        (
            ["method=trades"],
            "method._target_: stored 'afd_lightning.methods.AdversarialTraining', now 'afd_lightning.methods.TRADES'",
        ),
        (
            ["method=afd"],
            "method._target_: stored 'afd_lightning.methods.AdversarialTraining', now 'afd_lightning.methods.AFD'",
        ),
        (["model=lenet"], "model._target_: stored 'afd_lightning.nets.resnet5', now 'afd_lightning.nets.lenet'"),
        (["attack=fgsm"], "attack.name: stored 'pgd_linf', now 'fgsm'"),
    ],
)
@pytest.mark.slow
def test_resume_with_another_recipe_is_refused_with_the_difference(tmp_path, finished, overrides, expected):
    last = finished / "checkpoints" / "last.ckpt"
    cfg = compose_train(["method=at", *TINY, f"ckpt_path={last}", *overrides], tmp_path / "resumed")
    with pytest.raises(ConfigError) as info:
        train_mod.run(cfg)
    message = str(info.value)
    assert expected in message and "resume_check=false" in message and str(last) in message
    assert not (tmp_path / "resumed").exists()


@pytest.mark.slow
def test_resume_check_false_still_refuses_weights_of_another_method(tmp_path, finished):
    last = finished / "checkpoints" / "last.ckpt"
    cfg = compose_train(["method=afd", *TINY, f"ckpt_path={last}", "resume_check=false"], tmp_path / "resumed")
    with pytest.raises(
        CheckpointError, match=r"another method or network \(AdversarialTraining\).*\(AFD\): \d+ missing: discriminator"
    ):
        train_mod.run(cfg)


@pytest.mark.slow
def test_loading_settings_are_not_part_of_the_recipe(finished):
    stored = run_config.from_checkpoint(load_checkpoint(finished / "checkpoints" / "last.ckpt"))
    now = compose_train(
        [
            "method=at",
            "dataset.batch_size=7",
            "dataset.num_workers=2",
            "dataset.eval_batch_size=9",
            "model.channels_last=true",
            "dataset.meta.eval_attack_steps=5",
            "trainer.max_epochs=9",
        ]
    )
    current = run_config.current_recipe(now)
    assert run_config.recipe_differences(stored, current) == []
    current["method"]["optimizer"]["lr"] = 0.05
    assert run_config.recipe_differences(stored, current) == ["method.optimizer.lr: stored 0.1, now 0.05"]


# ------------------------------------------------------------------ 6. resume appends to the CSV
@pytest.mark.slow
def test_resume_in_place_appends_to_metrics_csv(tmp_path):
    run_dir = tmp_path / "run"
    train_mod.run(tiny(run_dir, "trainer.max_epochs=1"))
    first = (run_dir / "csv" / "metrics.csv").read_text()
    assert csv_epochs(run_dir) == [0]
    train_mod.run(tiny(run_dir, "trainer.max_epochs=2", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"))
    assert csv_epochs(run_dir) == [0, 1]
    assert (run_dir / "csv" / "metrics.csv").read_text().startswith(first)


# ---------------------------------------------------------------- 7. no checkpoint with NaN/inf
class InfInBatchNorm(pl.Callback):
    """At the last training batch of ``epoch``, one BatchNorm running variance becomes inf (the loss stays finite)."""

    def __init__(self, epoch: int, watch: Path):
        self.epoch, self.watch, self.digest = epoch, watch, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch != self.epoch or batch_idx + 1 != trainer.num_training_batches:
            return
        self.digest = sha256(self.watch) if self.watch.exists() else None
        bn = next(m for m in pl_module.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_var[0] = float("inf")


@pytest.mark.slow
def test_inf_batchnorm_buffer_is_never_saved_and_the_message_names_the_good_checkpoint(tmp_path, runner):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    inject = InfInBatchNorm(epoch=1, watch=last)
    with pytest.raises(NonFiniteModelError) as info:
        runner(tiny(run_dir, "trainer.max_epochs=3"), inject)
    message = str(info.value)
    assert re.search(r"NaN/inf values at epoch 1, .*running_var", message), message
    assert f"ckpt_path={last}" in message
    assert inject.digest is not None and sha256(last) == inject.digest  # still epoch 0's
    for path in last.parent.iterdir():
        assert load_checkpoint(path)["epoch"] == 0, path
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow
def test_inf_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path, runner):
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteModelError, match="No checkpoint was written by this run"):
        runner(tiny(run_dir), InfInBatchNorm(epoch=0, watch=run_dir / "checkpoints" / "last.ckpt"))
    assert not list(run_dir.glob("checkpoints/*.ckpt"))


@pytest.mark.slow
def test_nan_loss_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"became \S+ at epoch 0.*No checkpoint was written by this run"):
        train_mod.run(tiny(run_dir, "method.optimizer.lr=1e30", "trainer.limit_train_batches=4"))
    assert not list(run_dir.glob("checkpoints/*.ckpt"))


# ------------------------------------------------- 8. preemption: exit 143, and a second run refused
@pytest.mark.slow
def test_preempted_run_exits_143_and_says_how_to_resume(tmp_path):
    run_dir, marker, log = tmp_path / "run", tmp_path / "paused", tmp_path / "first.log"
    common = [
        *FAST,
        "method=nt",
        "+trainer.limit_train_batches=3",
        "trainer.max_epochs=2",
        "test_after_fit=false",
        f"hydra.run.dir={run_dir}",
    ]
    proc = start([*common, *pause_at(1, 1, marker)], log)
    wait_for(marker, proc, log)

    second_log = tmp_path / "second.log"
    second = start(common, second_log)
    assert finish(second, second_log, expect_ok=False) == 1
    assert f"run directory {run_dir} is in use by process {proc.pid}" in second_log.read_text()

    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc, log, expect_ok=False) == 143, log.read_text()[-3000:]
    text = log.read_text()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert re.search(
        rf"preempted: .*{re.escape(str(last))} was written; resume with .*ckpt_path={re.escape(str(last))}", text
    )
    assert load_checkpoint(last)["callbacks"]["ExactResume"]["batches_done"] == 2
    assert not (run_dir / ".lock").exists() and not (run_dir / "metrics.json").exists()


# --------------------------------------------------- 9. the Lightning internal exact resume reads
@pytest.mark.slow
def test_lightning_private_data_fetcher_is_where_exact_resume_reads_it(tmp_path):
    """ExactResume skips batches through FitLoop._data_fetcher.iterator (private): this fails the day it moves."""
    seen: list = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(epoch_iterator(trainer))

    cfg = tiny(tmp_path / "run", "+trainer.limit_val_batches=0", "callbacks=none", "logger=none")
    datamodule, method, trainer = train_mod.build(cfg)
    trainer.callbacks.append(Probe())
    trainer.fit(method, datamodule=datamodule)
    assert len(seen) == 2 and seen[0] is seen[1] and hasattr(seen[0], "__next__")


@pytest.mark.parametrize(
    "crafted",
    [
        "{ckpt}/..",  # the run directory itself: Lightning would remove it recursively
        "{ckpt}",  # the checkpoint directory
        "{ckpt}/sub/../../notes.txt",
        "{ckpt}/last.pt",  # not a .ckpt file
        "{run}/best.ckpt",  # in the run, not in its checkpoint directory
    ],
)
def test_only_ckpt_files_strictly_below_the_checkpoint_directory_are_kept(tmp_path, crafted):
    run_dir = (tmp_path / "run").resolve()
    path = crafted.format(ckpt=f"{run_dir}/checkpoints", run=run_dir)
    state = {"best_model_path": path, "last_model_path": path, "best_k_models": {path: 0.5}}
    assert path in sanitize_callback_state(state, run_dir / "checkpoints")
    assert state["best_model_path"] == state["last_model_path"] == "" and state["best_k_models"] == {}

"""Issue 17, cases 4-9: bounded checkpoint files, no write through a symlink, CRC at test time, signals
and locks, a crafted mid-epoch position, and a refused start that loses nothing.

Most tests need no training (crafted files, the writers called directly); the few that need a run use
the cheapest one (NT on digits, one training batch).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from afd_lightning import train as train_mod
from afd_lightning.callbacks.resume import ExactResume, ResumePositionError, capture_rng_state
from afd_lightning.errors import CheckpointError as BaseCheckpointError
from afd_lightning.evaluation.report import writer
from afd_lightning.files.writer import CSVLogger, SymlinkRefusedError, write_text_atomic
from afd_lightning.run import rundir
from afd_lightning.store.checkpoint import SIZE_FACTOR, CheckpointError, load_checkpoint

from helpers import zygote
from helpers.compose import FAST, REPO, compose_train

ONE_BATCH = ["method=nt", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1"]


# ------------------------------------------------------------------ 5. bounded zip members
def rewrite_member(source: Path, target: Path, name_part: str, data: bytes, deflate: bool = True) -> None:
    """A copy of the torch.save zip ``source`` whose member ending in ``name_part`` holds ``data``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            content = data if info.filename.endswith(name_part) else old.read(info)
            kind = zipfile.ZIP_DEFLATED if deflate and info.filename.endswith(name_part) else zipfile.ZIP_STORED
            new.writestr(info.filename, content, compress_type=kind, compresslevel=1)


@pytest.fixture
def small_ckpt(tmp_path) -> Path:
    path = tmp_path / "small.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(4)}, "epoch": 0}, path)
    return path


def test_a_member_larger_than_its_tensor_is_refused_before_torch_load(small_ckpt, tmp_path):
    crafted = tmp_path / "crafted.ckpt"
    rewrite_member(small_ckpt, crafted, "/data/0", bytes(200_000))  # the tensor has 4 floats = 16 bytes
    with pytest.raises(CheckpointError, match=r"declares 200,000 bytes but its tensor metadata implies 16") as info:
        load_checkpoint(crafted)
    assert str(crafted) in str(info.value)


def test_a_deflated_bomb_is_refused_by_the_total_cap(small_ckpt, tmp_path):
    crafted = tmp_path / "bomb.ckpt"
    rewrite_member(small_ckpt, crafted, "/data/0", bytes(64 << 20))  # 64 MiB of zeros in a file of ~70 KB
    assert crafted.stat().st_size < 1 << 20
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"more than the limit of {SIZE_FACTOR} x its size") as info:
        load_checkpoint(crafted)
    assert time.perf_counter() - start < 2.0 and str(crafted) in str(info.value)


def test_an_extra_member_is_refused(small_ckpt, tmp_path):
    crafted = tmp_path / "extra.ckpt"
    shutil.copy(small_ckpt, crafted)
    with zipfile.ZipFile(crafted, "a") as archive:
        archive.writestr("small/data/99", bytes(5000))
    with pytest.raises(CheckpointError, match=r"data/99"):
        load_checkpoint(crafted)


def test_genuine_files_pass_the_bounds(small_ckpt):
    assert torch.equal(load_checkpoint(small_ckpt)["state_dict"]["model.w"], torch.zeros(4))


# ------------------------------------------------------------------ 7. no write through a symlink
def test_csv_metrics_never_append_through_a_symlink(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (tmp_path / "run" / "csv").mkdir(parents=True)
    (tmp_path / "run" / "csv" / "metrics.csv").symlink_to(outside)
    logger = CSVLogger(save_dir=str(tmp_path / "run"), name="csv", version="")
    with pytest.raises(SymlinkRefusedError, match=r"metrics\.csv is a symbolic link"):
        logger.log_metrics({"train/loss": 1.0}, step=0)
        logger.save()
    assert outside.read_text() == "precious\n"


def test_csv_logger_writes_metrics_and_hparams(tmp_path):
    logger = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"a": 1.0}, step=0)
    logger.save()
    logger.log_metrics({"a": 2.0, "b": 3.0}, step=1)  # a new key rewrites the header, rows kept
    logger.save()
    lines = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "a,b,step" and len(lines) == 3
    assert "lr: 0.1" in (tmp_path / "csv" / "hparams.yaml").read_text()


def test_evaluation_writer_never_writes_through_a_symlink(tmp_path):
    out, outside = tmp_path / "eval", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("precious\n")
    (out / "tables.md.tmp").symlink_to(outside)  # the old fixed temporary name: no longer used
    writer.write_text(out / "tables.md", "table\n")
    assert (out / "tables.md").read_text() == "table\n" and outside.read_text() == "precious\n"
    (out / "results.json").symlink_to(outside)
    with pytest.raises(SymlinkRefusedError, match="results.json"):
        writer.write_json(out / "results.json", {"a": 1})
    assert outside.read_text() == "precious\n"


def test_a_stale_symlink_in_the_eval_output_gives_a_clear_error(tmp_path):
    out, elsewhere = tmp_path / "eval", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "results.json").write_text("{}")
    (out / "stale").symlink_to(elsewhere)
    with pytest.raises(SymlinkRefusedError, match=r"stale is a symbolic link"):
        writer.start(out)
    assert list(elsewhere.iterdir()) == []


def test_metrics_json_and_the_lock_are_never_written_through_a_symlink(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (tmp_path / "metrics.json").symlink_to(outside)
    with pytest.raises(SymlinkRefusedError):
        write_text_atomic(tmp_path / "metrics.json", "{}")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to(outside)  # unreadable as a lock: stale, replaced (the link, not its target)
    lock = rundir.RunLock(run_dir)
    lock.acquire()
    assert not (run_dir / ".lock").is_symlink() and outside.read_text() == "precious\n"
    lock.release()


# ------------------------------------------------------------------ 8. locks: taking a stale one is atomic
def _take(run_dir: str, barrier, results) -> None:
    barrier.wait()
    try:
        rundir.RunLock(Path(run_dir)).acquire()
        results.put("took")
        time.sleep(1.5)  # alive while the other start looks at the lock
    except rundir.RunDirectoryError:
        results.put("refused")


@pytest.mark.slow
def test_two_starts_finding_a_stale_lock_cannot_both_take_it(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = rundir.RunLock(run_dir)._me()["host"]
    (run_dir / ".lock").write_text(json.dumps({"pid": dead.pid, "host": host, "started": "earlier"}))
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_take, args=(str(run_dir), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(results.get(timeout=5) for _ in procs) == ["refused", "took"]


# ------------------------------------------------------------------ 8. a crafted mid-epoch position
@pytest.mark.parametrize("batches_done", [999, -1, "3"])
def test_a_crafted_position_past_the_epoch_gives_a_clear_error(batches_done):
    callback = ExactResume()
    state = capture_rng_state()
    callback.load_state_dict({"rng": state, "epoch_rng": state, "batches_done": batches_done})
    trainer = SimpleNamespace(
        fit_loop=SimpleNamespace(restarted_mid_epoch=True), num_training_batches=3, current_epoch=0
    )
    with pytest.raises(ResumePositionError, match="this epoch has 3 batches"):
        callback.on_train_start(trainer, None)


# ------------------------------------------------------------------ 6 and 8: test-time CRC, SIGTERM in test
@pytest.fixture
def run_with(monkeypatch):
    """``run_with(cfg, *callbacks)``: ``train.run(cfg)`` with extra callbacks on its trainer."""

    def go(cfg, *callbacks):
        real_build = train_mod.build

        def build(c):
            datamodule, method, trainer = real_build(c)
            trainer.callbacks[:0] = list(callbacks)
            return datamodule, method, trainer

        monkeypatch.setattr(train_mod, "build", build)
        return train_mod.run(cfg)

    return go


class DamageBest(pl.Callback):
    """After fit, before test: overwrite bytes in the middle of best.ckpt's largest tensor."""

    def on_fit_end(self, trainer, pl_module):
        path = Path(trainer.checkpoint_callback.dirpath) / "best.ckpt"
        with zipfile.ZipFile(path) as archive:
            member = max(archive.infolist(), key=lambda i: i.file_size)
            offset = member.header_offset + 30 + len(member.filename) + len(member.extra) + member.file_size // 2
        data = bytearray(path.read_bytes())
        data[offset : offset + 64] = bytes(64)
        path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_damaged_best_checkpoint_is_refused_at_test_time(tmp_path, run_with):
    run_dir = tmp_path / "run"
    with pytest.raises(BaseCheckpointError, match=r"best\.ckpt is corrupt: the CRC check"):
        run_with(compose_train([*ONE_BATCH, "test_ckpt=best"], run_dir), DamageBest())
    assert not (run_dir / "metrics.json").exists()


class SigtermInTest(pl.Callback):
    """What Lightning's SIGTERM handler does (it only sets this flag), during the last test batch."""

    def on_test_batch_end(self, trainer, *args):
        trainer._signal_connector.received_sigterm = True


@pytest.mark.slow
def test_sigterm_during_test_exits_143_without_metrics(tmp_path, run_with):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        run_with(compose_train(ONE_BATCH, run_dir), SigtermInTest())
    assert info.value.code == 143
    assert not (run_dir / "metrics.json").exists() and not (run_dir / ".lock").exists()


# ------------------------------------------------------------------ 9. a refused start loses nothing
def train_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO / "tests")}
    return zygote.run(["train.py", *FAST, *args], cwd=REPO, env=env, timeout=600)


@pytest.mark.slow  # two train.py processes
def test_a_refused_resume_leaves_the_old_hydra_record_byte_identical(tmp_path):
    from afd_lightning.summarize.cli import find_runs

    run_dir = tmp_path / "logs" / "run"
    first = train_cli(*ONE_BATCH, "test_after_fit=false", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    record = {p.name: p.read_bytes() for p in (run_dir / ".hydra").glob("*.yaml")}
    assert set(record) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    train_log = (run_dir / "train.log").read_bytes()
    assert b"threads: 1" in train_log and b"metrics in" in train_log  # lines from before and after the checks
    assert b"method=nt" in record["overrides.yaml"]
    refused = train_cli(
        "method=at",
        "+trainer.limit_train_batches=1",
        f"ckpt_path={run_dir}/checkpoints/last.ckpt",
        f"hydra.run.dir={run_dir}",
    )
    assert refused.returncode != 0 and "method" in (refused.stdout + refused.stderr)
    assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").glob("*.yaml")} == record
    assert (run_dir / "train.log").read_bytes() == train_log  # the refused start's lines went to the console only
    runs = find_runs(tmp_path / "logs")
    assert [(r.path, r.method) for r in runs] == [(run_dir, "NT")]  # afd-summarize still labels it right

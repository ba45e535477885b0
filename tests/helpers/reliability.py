"""Test-only callbacks for the reliability tests, loaded by ``train.py`` subprocesses through Hydra
(``PYTHONPATH=tests``, ``+callbacks.pause._target_=helpers.reliability.PauseAt ...``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytorch_lightning as pl

from helpers import zygote
from helpers.compose import REPO

TIMEOUT = 420  # seconds a train.py subprocess may take before the test fails


class PauseAt(pl.Callback):
    """At the start of training batch ``batch`` of epoch ``epoch``: write ``marker``, then wait.

    The waiting process is where the test sends its signal, so the interruption lands at a known
    point inside the epoch. The wait ends early once Lightning has seen a SIGTERM (Python retries
    ``time.sleep`` after a signal handler returns, so the loop polls in short sleeps).
    """

    def __init__(self, epoch: int, batch: int, marker: str, wait_s: float = 300.0):
        self.epoch, self.batch, self.marker, self.wait_s = epoch, batch, Path(marker), wait_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) != (self.epoch, self.batch):
            return
        self.marker.write_text(f"{trainer.current_epoch} {batch_idx} {trainer.global_step}\n")
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and not trainer.received_sigterm:
            time.sleep(0.05)


class FailAt(pl.Callback):
    """Raises :class:`Interrupted` at the start of training batch ``batch`` of epoch ``epoch`` (in-process crashes)."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            raise Interrupted(f"interrupted at epoch {self.epoch}, batch {self.batch}")


class Interrupted(RuntimeError):
    pass


# --- driving train.py in a subprocess, paused at a chosen batch
def _env() -> dict:
    return dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONPATH=str(REPO / "tests"))


def start(args: list[str], log: Path) -> zygote.Forked:
    """``train.py *args`` in its own process (forked by the test zygote), stdout and stderr into ``log``."""
    return zygote.popen(["train.py", *args], cwd=REPO, env=_env(), stdout=log)


def finish(proc: zygote.Forked, log: Path, expect_ok: bool = True) -> int:
    try:
        code = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"train.py did not finish in {TIMEOUT}s:\n{log.read_text()[-4000:]}") from None
    if expect_ok:
        assert code == 0, f"train.py exited {code}:\n{log.read_text()[-6000:]}"
    return code


def pause_at(epoch: int, batch: int, marker: Path) -> list[str]:
    return [
        "+callbacks.pause._target_=helpers.reliability.PauseAt",
        f"+callbacks.pause.epoch={epoch}",
        f"+callbacks.pause.batch={batch}",
        f"+callbacks.pause.marker={marker}",
    ]


def wait_for(marker: Path, proc: zygote.Forked, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"train.py exited {proc.returncode} before the pause:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no pause marker after {TIMEOUT}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)

"""Test-only callbacks for the reliability tests, loaded by ``train.py`` subprocesses through Hydra
(``PYTHONPATH=tests``, ``+callbacks.pause._target_=reliability_helpers.PauseAt ...``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl


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

"""Callbacks that send this process a real signal at a chosen point of a run (for end-to-end signal tests)."""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class SigtermAtTestStart(pl.Callback):
    """``kill -TERM <own pid>`` when ``trainer.test`` starts: what a scheduler's preemption does at that moment."""

    def on_test_start(self, trainer, pl_module) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

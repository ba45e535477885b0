"""Training helpers shared by the tests: ``runner`` (``run(cfg)`` with extra callbacks), test callbacks."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import pytorch_lightning as pl

from afd_lightning import train as train_mod


class Recorder(pl.Callback):
    """What the trainer looked like at train start, at each epoch start, and at train end."""

    def __init__(self):
        self.start: dict | None = None
        self.epochs: list[tuple[int, list[float]]] = []
        self.end: dict | None = None

    @staticmethod
    def lrs(trainer) -> list[float]:
        return [o.param_groups[0]["lr"] for o in trainer.optimizers]

    def on_train_start(self, trainer, pl_module):
        self.start = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "optimizer_states": [copy.deepcopy(o.state_dict()) for o in trainer.optimizers],
            "state_dict": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
        }

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append((trainer.current_epoch, self.lrs(trainer)))

    def on_train_end(self, trainer, pl_module):
        self.end = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "lrs": self.lrs(trainer)}


class BlowUpLearningRate(pl.Callback):
    """From epoch ``at_epoch`` on, every learning rate is ``lr`` (and last.ckpt's hash is noted first)."""

    def __init__(self, at_epoch: int, lr: float, ckpt: Path):
        self.at_epoch, self.lr, self.ckpt = at_epoch, lr, ckpt
        self.ckpt_digest: str | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at_epoch:
            self.ckpt_digest = sha256(self.ckpt)
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = self.lr


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def runner(monkeypatch):
    """``runner(cfg, *callbacks)`` -> (metrics, built): ``run(cfg)`` with extra callbacks on its trainer.

    ``built`` holds the run's ``datamodule``, ``method`` and ``trainer``, filled in before training
    starts, so it is available even when ``run`` raises.
    """

    def go(cfg, *callbacks, built: dict | None = None):
        built = {} if built is None else built
        real_build = train_mod.build

        def build(c):
            datamodule, method, trainer = real_build(c)
            trainer.callbacks[:0] = list(callbacks)
            built.update(datamodule=datamodule, method=method, trainer=trainer)
            return datamodule, method, trainer

        monkeypatch.setattr(train_mod, "build", build)
        return train_mod.run(cfg), built

    return go

"""Test-only callbacks loaded by ``train.py`` subprocesses through Hydra (``PYTHONPATH=tests``).

``+callbacks.save_weights._target_=helpers.ddp.SaveRankWeights +callbacks.save_weights.out_dir=DIR``
makes every rank write its parameters at the start and at the end of training, so a test can
check that data-parallel ranks stayed in sync and that training changed the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch


def _params(pl_module: pl.LightningModule) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters()}


class SaveRankWeights(pl.Callback):
    """Writes ``init_rank{r}.pt`` (on_train_start), ``rank{r}.pt`` and ``rank{r}.json`` (on_train_end)."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(_params(pl_module), self.out_dir / f"init_rank{trainer.global_rank}.pt")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank = trainer.global_rank
        torch.save(_params(pl_module), self.out_dir / f"rank{rank}.pt")
        wrapped = trainer.strategy.model  # DistributedDataParallel under DDP
        info = {
            "global_rank": rank,
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "wrapper": type(wrapped).__name__,
            "find_unused_parameters": getattr(wrapped, "find_unused_parameters", None),
            "global_step": trainer.global_step,
            "num_training_batches": trainer.num_training_batches,
        }
        (self.out_dir / f"rank{rank}.json").write_text(json.dumps(info, indent=2) + "\n")

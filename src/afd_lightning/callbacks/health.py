"""The health of AFD's game: a warning when the adversarial decoder Da collapses."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn


class DiscriminatorHealth(pl.Callback):
    """Warns when AFD's adversarial decoder Da collapses, and logs ``train/disc_collapsed`` (0 or 1).

    Reads the epoch means AFD logs: ``train/disc_acc_clean`` (fraction of clean embeddings Da
    calls clean) and ``train/disc_acc_adv`` (fraction of perturbed ones it calls perturbed).

    * chance: ``|(acc_clean + acc_adv) / 2 - 0.5| <= chance_margin`` -- Da no longer separates
      clean from perturbed embeddings (dead or not learning), so the encoder's step 3 is noise;
    * perfect: ``min(acc_clean, acc_adv) >= perfect_above`` -- Da wins outright, the encoder
      cannot catch up (often too high ``optimizer_disc.lr`` or too low ``optimizer_enc.lr``).

    Either for ``patience`` consecutive epochs gives one rank-zero warning per episode naming
    the state, the accuracies and the three losses. The first ``warmup_epochs`` epochs do not
    count: at the start of the game Da is at chance by construction (it needs a few hundred
    updates to separate the embeddings). Methods without a discriminator log no such metrics
    and are left alone.
    """

    KEYS = ("train/disc_acc_clean", "train/disc_acc_adv")
    LOSSES = ("train/loss_cls", "train/loss_disc", "train/loss_enc")

    def __init__(
        self, patience: int = 5, chance_margin: float = 0.05, perfect_above: float = 0.99, warmup_epochs: int = 5
    ):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.chance_margin, self.perfect_above = patience, chance_margin, perfect_above
        self.warmup_epochs = warmup_epochs
        self.state: str | None = None  # "chance" | "perfect" | None
        self.streak = 0
        self.warned = False
        self.warnings: list[str] = []

    def classify(self, acc_clean: float, acc_adv: float) -> str | None:
        if min(acc_clean, acc_adv) >= self.perfect_above:
            return "perfect"
        if abs((acc_clean + acc_adv) / 2 - 0.5) <= self.chance_margin:
            return "chance"
        return None

    def update(self, metrics: dict[str, float], epoch: int) -> bool:
        """Feeds one epoch's metrics; returns whether Da counts as collapsed after it."""
        if not all(k in metrics for k in self.KEYS):
            return False
        acc_clean, acc_adv = (float(metrics[k]) for k in self.KEYS)
        state = self.classify(acc_clean, acc_adv) if epoch >= self.warmup_epochs else None
        if state is None or state != self.state:
            self.warned = False
            self.streak = 0
        self.state = state
        self.streak = self.streak + 1 if state else 0
        collapsed = state is not None and self.streak >= self.patience
        if collapsed and not self.warned:
            losses = ", ".join(f"{k}={float(metrics[k]):.4f}" for k in self.LOSSES if k in metrics)
            what = (
                "at chance: it no longer tells clean from perturbed embeddings"
                if state == "chance"
                else "at 100%: the encoder gets no useful signal from it"
            )
            message = (
                f"AFD discriminator collapsed at epoch {epoch}: Da's accuracy has been {what} for "
                f"{self.streak} epochs (disc_acc_clean={acc_clean:.3f}, disc_acc_adv={acc_adv:.3f}; {losses}). "
                "Check method.optimizer_disc.lr / method.optimizer_enc.lr and the attack strength."
            )
            self.warnings.append(message)
            rank_zero_warn(message)
            self.warned = True
        return collapsed

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {k: v.item() if torch.is_tensor(v) else v for k, v in trainer.callback_metrics.items()}
        if not all(k in metrics for k in self.KEYS):
            return
        collapsed = self.update(metrics, trainer.current_epoch)
        pl_module.log("train/disc_collapsed", float(collapsed), on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state, "streak": self.streak, "warned": self.warned}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state, self.streak, self.warned = state_dict["state"], state_dict["streak"], state_dict["warned"]

"""The baselines AFD is compared with in the paper: NT, AT, TRADES and the MATCH ablation.

Each method's math is one function, ``training_losses(x, y)`` (the loss and what the step logs): Lightning's
``training_step`` and the plain PyTorch loop of benchmarks/bench_train_step.py both call it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from afd_lightning.errors import ConfigError
from afd_lightning.methods.base import RobustMethod, kl_clean_to_adv


class NaturalTraining(RobustMethod):
    """NT: cross-entropy on clean inputs only.  ``loss = CE(f(x), y)``."""

    short_name = "NT"

    def training_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        logits = self.model(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits}

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.training_losses(x, y)
        self.check_finite("loss", out["loss"])
        self.log_accuracy("train", "acc_clean", out["logits"], y)
        self.log_scalars("train", {"loss": out["loss"]}, y.shape[0])
        return out["loss"]


class AdversarialTraining(RobustMethod):
    """AT (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", arXiv:1706.06083).

    ``loss = CE(f(x'), y)`` with ``x'`` from the training attack (PGD-L-inf by default), made
    with the model in eval mode and its parameters frozen.
    """

    short_name = "AT"

    def training_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        logits_adv = self.model(self.make_adversarial(x, y))
        return {"loss": F.cross_entropy(logits_adv, y), "logits_adv": logits_adv}

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.training_losses(x, y)
        self.check_finite("loss", out["loss"])
        self.log_accuracy("train", "acc_adv", out["logits_adv"], y)
        self.log_scalars("train", {"loss": out["loss"]}, y.shape[0])
        return out["loss"]


class TRADES(RobustMethod):
    """TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy", arXiv:1901.08573).

    ``loss = CE(f(x), y) + beta * KL(f(x) || f(x'))``, where ``x'`` maximises the KL term by PGD
    started at ``x + 0.001 * N(0, I)`` (as in the authors' code) with the training attack's
    budget, step size and step count.  Default ``beta = 6`` (the paper's CIFAR/MNIST setting).
    """

    short_name = "TRADES"

    def __init__(self, *args, beta: float = 6.0, init_std: float = 0.001, **kwargs):
        super().__init__(*args, **kwargs)
        if not beta >= 0:
            raise ConfigError(f"trades: beta must be >= 0, got {beta}")
        self.beta, self.init_std = float(beta), float(init_std)

    def trades_adversarial(self, x: torch.Tensor) -> torch.Tensor:
        from afd_lightning.attacks import attack_mode

        with attack_mode(self.model), torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            p_clean = F.softmax(self.model(x.float()), dim=1)
        delta0 = self.init_std * torch.randn_like(x, dtype=torch.float32)
        return self.make_adversarial(
            x, p_clean, loss_fn=lambda logits, p: kl_clean_to_adv(logits, p, reduction="sum"), delta_init=delta0
        )

    def training_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        x_adv = self.trades_adversarial(x)
        logits = self.model(x)
        logits_adv = self.model(x_adv)
        loss_nat = F.cross_entropy(logits, y)
        loss_rob = kl_clean_to_adv(logits_adv, F.softmax(logits, dim=1))
        return {
            "loss": loss_nat + self.beta * loss_rob,
            "loss_nat": loss_nat,
            "loss_rob": loss_rob,
            "logits": logits,
            "logits_adv": logits_adv,
        }

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.training_losses(x, y)
        return _log_clean_and_adv(self, out, y, ("loss", "loss_nat", "loss_rob"))


class EmbeddingMatching(RobustMethod):
    """MATCH: the paper's "matching vs indiscrimination" baseline (AFD paper, Figure A5).

    ``loss = CE(f(x), y) + lam * mean_i ||E(x_i) - E(x'_i)||_2^2`` with ``x'`` from the training
    attack: the embeddings of clean and perturbed inputs are pulled together directly instead
    of being made indistinguishable to a discriminator.  Default ``lam = 1``.
    """

    short_name = "MATCH"

    def __init__(self, *args, lam: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not lam >= 0:
            raise ConfigError(f"match: lam must be >= 0, got {lam}")
        self.lam = float(lam)

    def training_losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        x_adv = self.make_adversarial(x, y)
        z, logits = self.model.forward_with_embedding(x)
        z_adv, logits_adv = self.model.forward_with_embedding(x_adv)
        loss_cls = F.cross_entropy(logits, y)
        loss_match = (z - z_adv).pow(2).sum(dim=1).mean()
        return {
            "loss": loss_cls + self.lam * loss_match,
            "loss_cls": loss_cls,
            "loss_match": loss_match,
            "logits": logits,
            "logits_adv": logits_adv,
        }

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.training_losses(x, y)
        return _log_clean_and_adv(self, out, y, ("loss", "loss_cls", "loss_match"))


def _log_clean_and_adv(method: RobustMethod, out: dict, y: torch.Tensor, scalars: tuple[str, ...]) -> torch.Tensor:
    """The training step's checks and logs for a method whose losses see clean and perturbed logits (TRADES, MATCH)."""
    method.check_finite("loss", out["loss"])
    method.log_accuracy("train", "acc_clean", out["logits"], y)
    method.log_accuracy("train", "acc_adv", out["logits_adv"], y)
    method.log_scalars("train", {k: out[k] for k in scalars}, y.shape[0])
    return out["loss"]

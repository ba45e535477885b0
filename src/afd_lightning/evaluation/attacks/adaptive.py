"""Adaptive attacks on AFD, a feature-level defense (Carlini et al. 2019, *On Evaluating Adversarial
Robustness*, arXiv:1902.06705, Sec. 5; Tramèr et al. 2020, arXiv:2002.08347).

Each is advertorch's PGD (``LinfPGDAttack`` / ``L2PGDAttack``) with another objective:

* ``margin`` -- the C&W margin ``max_{j≠y} z_j − z_y`` (Carlini & Wagner 2017): does not saturate
  when the softmax does, which cross-entropy PGD suffers from on a model with p(y) = 1.0;
* ``dlr`` -- the difference-of-logits ratio of Croce & Hein 2020 (arXiv:2003.01690, Eq. 6),
  invariant to the scale of the logits;
* ``embedding`` -- maximise ``‖E(x′) − E(x)‖²`` in the encoder's embedding, which AFD trains to
  be stable, and read the label through the classifier Dc (random start: the gradient is 0 at x′ = x);
* ``targeted`` -- targeted cross-entropy PGD towards the most likely wrong class of the clean image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks.advertorch import NormBallAttack

OBJECTIVES = ("margin", "dlr", "embedding", "targeted")


def _other_max(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed C&W margin ``max_{j≠y} z_j − z_y`` (positive once misclassified)."""
    return (_other_max(logits, y) - logits.gather(1, y[:, None])[:, 0]).sum()


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed DLR loss ``−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3)`` (Croce & Hein 2020, Eq. 6)."""
    if logits.shape[1] < 3:
        raise ConfigError("the DLR loss needs at least 3 classes; use objective=margin")
    top = logits.sort(1, descending=True).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    return (-(z_y - _other_max(logits, y)) / (top[:, 0] - top[:, 2] + 1e-12)).sum()


def embedding_loss(embedding: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    return (embedding - clean).flatten(1).pow(2).sum()


def most_likely_wrong(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -torch.inf).argmax(1)


class AdaptivePGD(NormBallAttack):
    """PGD with an adaptive ``objective`` (``margin``, ``dlr``, ``embedding`` or ``targeted``).

    Takes :class:`~afd_lightning.evaluation.attacks.advertorch.NormBallAttack`'s arguments (advertorch PGD class,
    steps, step size, random start) and :class:`~afd_lightning.evaluation.attacks.base.EvalAttack`'s options
    (restarts, ...).
    """

    def __init__(self, name: str, norm: str, eps: Sequence[float], attack_cls: str, objective: str, **kwargs):
        if objective not in OBJECTIVES:
            raise ConfigError(f"attack {name}: objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        if objective == "targeted":
            kwargs["targeted"] = True
        super().__init__(name, norm, eps, attack_cls, **kwargs)

    def describe(self) -> dict:
        return {**super().describe(), "objective": self.objective}

    def attack_once(self, model, x, y, eps):
        attack = self.factory(eps)
        if self.objective == "margin":
            return attack(model, x, y, loss_fn=margin_loss)
        if self.objective == "dlr":
            return attack(model, x, y, loss_fn=dlr_loss)
        if self.objective == "targeted":
            with torch.no_grad():
                target = most_likely_wrong(model(x), y)
            return attack(model, x, target)
        encoder = getattr(model, "encoder", None)
        if encoder is None:
            raise ConfigError(f"attack {self.name}: objective=embedding needs a model with an .encoder (E)")
        with torch.no_grad():
            clean = encoder(x.float()).detach()
        # The label is read through Dc afterwards, by the sweep (model(x_adv) = Dc(E(x_adv))).
        return attack(encoder, x, clean, loss_fn=embedding_loss)

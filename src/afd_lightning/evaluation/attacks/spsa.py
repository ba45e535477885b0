"""SPSA (Uesato et al. 2018, *Adversarial Risk and the Dangers of Evaluating Against Weak Attacks*,
arXiv:1802.05666), L∞, gradient-free: advertorch's ``LinfSPSAAttack`` algorithm, made cheaper.

The algorithm is advertorch 0.2.3's, step for step and draw for draw: Adam (``lr``) on the perturbation,
the gradient of the margin loss ``max_{j≠y} z_j − z_y`` estimated from ``nb_sample`` Rademacher
directions ``v`` (one direction shared by the batch per draw, as advertorch draws them) as
``(f(x + δv) − f(x − δv)) / (2δv)``, then the perturbation clipped into the ε-ball and [0, 1].
With ``early_stop=false`` it returns advertorch's result (tests/evaluation/attacks/test_spsa.py compares them).
What is cheaper:

* advertorch copies every image ``max_batch_size`` times per step (4,096 copies in conf/eval/attack/spsa.yaml)
  to use ``nb_sample`` of them; here only the directions of a chunk are materialised;
* ``early_stop`` (default): a sample is attacked until the model misclassifies it, then leaves the batch
  with that adversarial example. Its directions are still drawn for the whole batch, so every sample
  still running sees the same random numbers as without early stopping, and advertorch's loss is per
  sample, its Adam elementwise: a sample's path does not depend on which others are still running.
  A sample stopped at step t was fooled at step t, so the attack can only leave the same or a lower
  accuracy than advertorch's (which returns the last step, where a fooled sample can be correct again).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks.base import EvalAttack


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample ``max_{j≠y} z_j − z_y`` (advertorch's ``MarginalLoss``, reduction none)."""
    top, classes = torch.topk(logits, 2, dim=-1)
    target = logits[torch.arange(logits.shape[0], device=logits.device), y]
    return torch.where(classes[..., 0] == y, top[..., 1], top[..., 0]) - target


class SPSA(EvalAttack):
    """SPSA at each ε, L∞ only.

    Args:
        steps: Adam steps (advertorch ``nb_iter``).
        delta: SPSA's finite-difference scale δ.
        lr: Adam's learning rate.
        nb_sample: random directions per gradient estimate.
        max_batch_size: directions evaluated at once (a memory bound: ``max_batch_size`` x batch images).
        early_stop: stop each sample once it is misclassified (see the module docstring); false: advertorch's result.
        **options: :class:`EvalAttack`'s options (``gradient_free`` defaults to true).
    """

    kind = "norm_ball"

    def __init__(
        self,
        name: str,
        norm: str,
        eps: Sequence[float],
        steps: int = 20,
        delta: float = 0.01,
        lr: float = 0.01,
        nb_sample: int = 128,
        max_batch_size: int = 64,
        early_stop: bool = True,
        **options,
    ):
        options.setdefault("gradient_free", True)
        options.setdefault("iterative", int(steps) > 1)
        super().__init__(name, norm, eps, **options)
        if norm != "linf":
            raise ConfigError(f"attack {name}: SPSA is an L∞ attack here (norm=linf), got norm={norm!r}")
        bad = {k: v for k, v in dict(steps=steps, nb_sample=nb_sample, max_batch_size=max_batch_size).items() if v < 1}
        if bad or not delta > 0 or not lr > 0:
            raise ConfigError(
                f"attack {name}: steps, nb_sample, max_batch_size must be >= 1 and delta, lr > 0 "
                f"(got steps={steps}, nb_sample={nb_sample}, max_batch_size={max_batch_size}, delta={delta}, lr={lr})"
            )
        self.steps, self.nb_sample, self.max_batch_size = int(steps), int(nb_sample), int(max_batch_size)
        self.delta, self.lr, self.early_stop = float(delta), float(lr), bool(early_stop)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "steps": self.steps,
            "delta": self.delta,
            "lr": self.lr,
            "nb_sample": self.nb_sample,
            "max_batch_size": self.max_batch_size,
            "early_stop": self.early_stop,
            "restarts": self.restarts,
        }

    def _grad(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """SPSA's estimate of the gradient of −margin at ``x`` for the ``active`` rows (zeros elsewhere)."""
        grad = torch.zeros_like(x)
        xa, ya = x[active], y[active]
        chunks = [self.max_batch_size] * (self.nb_sample // self.max_batch_size)
        if self.nb_sample % self.max_batch_size:
            chunks.append(self.nb_sample % self.max_batch_size)
        acc = torch.zeros_like(xa)
        for size in chunks:
            # the draw advertorch makes (one direction per chunk row, shared by the batch), for any batch
            v = torch.empty(size, 1, *x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_().mul_(2.0).sub_(1.0)
            v = v.expand(size, len(xa), *x.shape[1:]).contiguous()
            xs = xa.unsqueeze(0).expand_as(v).contiguous().view(-1, *x.shape[1:])
            ys = ya.unsqueeze(0).expand(size, len(ya)).contiguous().view(-1)
            v = v.view(-1, *x.shape[1:])
            df = -margin(model(xs + self.delta * v), ys) + margin(model(xs - self.delta * v), ys)
            g = df.view(-1, *[1] * (x.dim() - 1)) / (2.0 * self.delta * v)
            acc += g.view(size, len(xa), *x.shape[1:]).sum(dim=0)
        grad[active] = acc / self.nb_sample
        return grad

    @torch.no_grad()
    def attack_once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        dx = torch.zeros_like(x)
        dx.grad = torch.zeros_like(dx)
        optimizer = torch.optim.Adam([dx], lr=self.lr)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        x_adv = x.clone()
        for _ in range(self.steps):
            optimizer.zero_grad()
            dx.grad = self._grad(model, x + dx, y, active)
            optimizer.step()
            # into the eps-ball and [0, 1], in place so that Adam keeps tracking dx (advertorch's linf_clamp_)
            dx += torch.clamp(x + torch.clamp(dx, -eps, eps), 0.0, 1.0) - x - dx
            if self.early_stop:
                idx = active.nonzero().flatten()
                fooled = model(x[idx] + dx[idx]).argmax(1) != y[idx]
                x_adv[idx[fooled]] = x[idx[fooled]] + dx[idx[fooled]]
                active[idx[fooled]] = False
                if not active.any():
                    return x_adv
        x_adv[active] = x[active] + dx[active]
        return x_adv

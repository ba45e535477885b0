"""Evaluation attacks over advertorch: ε-ball attacks (FGSM, PGD-L∞/L2, MIM, SPSA), their black-box
transfer, and the minimum-norm DDN and C&W-L2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from afd_lightning.attacks import AttackFactory
from afd_lightning.evaluation.attacks.base import EvalAttack, LibraryMinNorm


class NormBallAttack(EvalAttack):
    """An advertorch attack inside the eps-ball, rebuilt for each eps (through :class:`AttackFactory`).

    Args:
        attack_cls: import path of the advertorch attack (``advertorch.attacks.LinfPGDAttack``).
        steps: iterations (``nb_iter``); None for single-step attacks.
        step_size: absolute step per iteration (``eps_iter``).
        rel_step_size: step as a fraction of eps (Foolbox's ``rel_stepsize``, as in Table A3);
            used when ``step_size`` is None.
        rand_init: random start in the ball (PGD).
        **kwargs: :class:`EvalAttack`'s options (``label``, ``restarts``, ...; ``iterative`` defaults to
            ``steps > 1``), then further arguments of the attack class (``decay_factor`` for MIM).
    """

    kind = "norm_ball"

    def __init__(
        self,
        name: str,
        norm: str,
        eps: Sequence[float],
        attack_cls: str,
        steps: int | None = None,
        step_size: float | None = None,
        rel_step_size: float | None = None,
        rand_init: bool | None = None,
        **kwargs,
    ):
        options, extra = self.split_options(kwargs)
        if options.get("iterative") is None:
            options["iterative"] = (steps or 1) > 1
        super().__init__(name, norm, eps, **options)
        self.attack_cls, self.steps, self.rand_init, self.extra = attack_cls, steps, rand_init, extra
        self.step_size, self.rel_step_size = step_size, rel_step_size
        self.factory(max(self.eps) or 1.0)  # validate the recipe now, not after an hour of attacks

    def factory(self, eps: float) -> AttackFactory:
        step = self.step_size
        if step is None and self.rel_step_size is not None:
            step = float(self.rel_step_size) * eps
        return AttackFactory(
            attack_cls=self.attack_cls,
            eps=eps,
            steps=self.steps,
            step_size=step or None,
            rand_init=self.rand_init,
            name=self.name,
            **self.extra,
        )

    def describe(self) -> dict:
        return {
            **super().describe(),
            "attack_cls": self.attack_cls,
            "steps": self.steps,
            "step_size": self.step_size,
            "rel_step_size": self.rel_step_size,
            "rand_init": self.rand_init,
            "restarts": self.restarts,
            **self.extra,
        }

    def attack_once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        return self.factory(eps)(model, x, y)


class TransferAttack(NormBallAttack):
    """Black-box transfer (Table 1, BB): adversarial examples made on ``source``, scored on the target.

    ``inner`` is any eps-ball attack of the suite (``kind == "norm_ball"``: advertorch, foolbox, AutoAttack, SPSA).
    """

    kind = "transfer"

    def __init__(self, inner: EvalAttack, source: nn.Module, eps: Sequence[float]):
        self.inner, self.source = inner, source
        EvalAttack.__init__(  # not NormBallAttack's: the recipe is the inner attack's
            self,
            f"{inner.name}_bb",
            inner.norm,
            eps,
            label=f"{inner.label} (BB)",
            n_samples=inner.n_samples,
            gradient_free=inner.gradient_free,
            iterative=inner.iterative,
            auc_table=False,
        )

    def describe(self) -> dict:
        return {**self.inner.describe(), "name": self.name, "kind": self.kind, "label": self.label}

    def perturb(self, model, x, y, eps):
        """The inner attack's examples on the source model (its own ε = 0 shortcut, attack mode and restarts)."""
        return self.inner.perturb(self.source, x, y, eps)


class AdvertorchMinNorm(LibraryMinNorm):
    """DDN (``advertorch.attacks.DDNL2Attack``) or C&W-L2 (``CarliniWagnerL2Attack``), L2.

    Args:
        attack_cls: import path of the advertorch attack.
        num_classes: passed to C&W (filled in from the model when ``auto``).
        **kwargs: :class:`EvalAttack`'s options, then the attack's own arguments (``nb_iter``,
            ``max_iterations``, ``learning_rate``...).
    """

    def __init__(self, name: str, eps: Sequence[float], attack_cls: str, norm: str = "l2", **kwargs):
        super().__init__(name, norm, eps, attack_cls, **kwargs)

    def adversarial(self, model, x, y):
        kwargs = dict(self.kwargs)
        if kwargs.get("num_classes") == "auto":
            with torch.no_grad():
                kwargs["num_classes"] = model(x[:1]).shape[1]
        return self._cls(model, clip_min=0.0, clip_max=1.0, **kwargs).perturb(x, y)

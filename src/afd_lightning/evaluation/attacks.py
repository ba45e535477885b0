"""Evaluation attacks, built by Hydra from ``afd_lightning/evaluation/conf/attack/*.yaml``, over the attack libraries.

Two kinds, because they are swept over eps differently (see :mod:`afd_lightning.evaluation.sweep`):

* :class:`NormBallAttack` -- finds an adversarial example inside an eps-ball for one eps at a time
  (FGSM, PGD-L∞/L2 and MIM from advertorch, SPSA from advertorch; dense PGD-L1 and the paper-exact
  Foolbox attacks in :mod:`.foolbox_attacks`, AutoAttack in :mod:`.autoattack`, adaptive PGD in :mod:`.adaptive`);
* :class:`MinNormAttack` -- one run gives each sample's smallest adversarial perturbation norm
  (DDN and C&W from advertorch, DeepFool and Boundary from foolbox), hence the whole accuracy curve.

Every attack runs on a model in eval mode with frozen parameters, in float32 with gradients on
(:func:`afd_lightning.attacks.attack_mode`), whatever the caller's context.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from afd_lightning.attacks import AttackFactory, attack_mode
from afd_lightning.attacks.factory import import_attack_class
from afd_lightning.errors import ConfigError

NORMS = ("linf", "l2", "l1")


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of ``delta`` (N, ...) in ``norm`` (linf | l2 | l1)."""
    flat = delta.detach().flatten(1).float()
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    return flat.abs().sum(1)


@contextlib.contextmanager
def _attack_context(model: nn.Module, device_type: str):
    with attack_mode(model), torch.enable_grad(), torch.autocast(device_type, enabled=False):
        yield


class EvalAttack:
    """What every evaluation attack has: a name, a norm, the eps list it is swept over.

    Args:
        name: key in results and tables (``pgd_linf``).
        norm: the norm its eps is measured in: ``linf``, ``l2`` or ``l1``.
        eps: the eps values of the accuracy curve (sorted ascending; 0 is clean accuracy).
        label: column title in the tables (``PGD-L∞``); defaults to ``name``.
        n_samples: attack only the first ``n_samples`` of the evaluation subset (e.g. 100 for
            Boundary, Table A4); None for all.
        gradient_free: the attack never reads gradients (SPSA, Boundary): used by the honesty checks.
        iterative: several steps (PGD) rather than one (FGSM): used by the honesty checks.
        auc_table: list the attack in the AUC table (Table 2); off for the single-eps check attacks.
    """

    kind = "abstract"

    def __init__(
        self,
        name: str,
        norm: str,
        eps: Sequence[float],
        label: str | None = None,
        n_samples: int | None = None,
        gradient_free: bool = False,
        iterative: bool = True,
        auc_table: bool = True,
    ):
        self.name = str(name)
        self.auc_table = bool(auc_table)
        if norm not in NORMS:
            raise ConfigError(f"attack {name}: norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        if isinstance(eps, (int, float)):
            eps = [eps]
        try:
            values = [float(e) for e in eps]
        except (TypeError, ValueError) as err:
            raise ConfigError(f"attack {name}: eps must be a list of numbers, got {eps!r}") from err
        bad = [e for e in values if not math.isfinite(e) or e < 0]
        if bad or not values:
            raise ConfigError(
                f"attack {name}: every eps must be a finite number >= 0, got {list(eps)!r}; e.g. attack.eps=[0,0.1,0.2]"
            )
        # Sorted and unique: the survivors sweep needs nested eps-balls, the AUC an ordered axis.
        self.eps = sorted(set(values))
        self.label = label or self.name
        if n_samples is not None and int(n_samples) < 1:
            raise ConfigError(f"attack {name}: n_samples must be >= 1 or null, got {n_samples!r}")
        self.n_samples = None if n_samples is None else int(n_samples)
        self.gradient_free = bool(gradient_free)
        self.iterative = bool(iterative)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "norm": self.norm,
            "label": self.label,
            "eps": self.eps,
            "n_samples": self.n_samples,
            "gradient_free": self.gradient_free,
            "iterative": self.iterative,
            "auc_table": self.auc_table,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {self.norm}, eps={self.eps})"


class NormBallAttack(EvalAttack):
    """An advertorch attack inside the eps-ball, rebuilt for each eps (through :class:`AttackFactory`).

    Args:
        attack_cls: import path of the advertorch attack (``advertorch.attacks.LinfPGDAttack``).
        steps: iterations (``nb_iter``); None for single-step attacks.
        step_size: absolute step per iteration (``eps_iter``).
        rel_step_size: step as a fraction of eps (Foolbox's ``rel_stepsize``, as in Table A3);
            used when ``step_size`` is None.
        rand_init: random start in the ball (PGD).
        restarts: run the attack this many times; a sample counts as robust only if every run fails.
        **extra: further arguments of the attack class (``decay_factor`` for MIM, ``nb_sample`` for SPSA).
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
        restarts: int = 1,
        label: str | None = None,
        n_samples: int | None = None,
        gradient_free: bool = False,
        iterative: bool | None = None,
        auc_table: bool = True,
        **extra,
    ):
        super().__init__(
            name,
            norm,
            eps,
            label,
            n_samples,
            gradient_free,
            iterative=(steps or 1) > 1 if iterative is None else iterative,
            auc_table=auc_table,
        )
        self.attack_cls, self.steps, self.rand_init, self.extra = attack_cls, steps, rand_init, extra
        self.step_size, self.rel_step_size = step_size, rel_step_size
        if int(restarts) < 1:
            raise ConfigError(f"attack {name}: restarts must be >= 1, got {restarts}")
        self.restarts = int(restarts)
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

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        """Adversarial examples within ``eps``; with restarts, the first run that fools the model wins."""
        attack = self.factory(eps)
        x_adv = attack(model, x, y)
        if self.restarts == 1:
            return x_adv
        for _ in range(self.restarts - 1):
            with torch.no_grad():
                alive = model(x_adv).argmax(1) == y
            if not alive.any():
                break
            x_adv[alive] = attack(model, x[alive], y[alive])
        return x_adv


class TransferAttack(NormBallAttack):
    """Black-box transfer (Table 1, BB): adversarial examples made on ``source``, scored on the target."""

    kind = "transfer"

    def __init__(self, inner: NormBallAttack, source: nn.Module, eps: Sequence[float]):
        self.inner, self.source = inner, source
        EvalAttack.__init__(
            self,
            f"{inner.name}_bb",
            inner.norm,
            eps,
            f"{inner.label} (BB)",
            inner.n_samples,
            inner.gradient_free,
            inner.iterative,
            auc_table=False,
        )
        self.restarts = 1

    def describe(self) -> dict:
        return {**self.inner.describe(), "name": self.name, "kind": self.kind, "label": self.label}

    def perturb(self, model, x, y, eps):
        return self.inner.perturb(self.source, x, y, eps)


class MinNormAttack(EvalAttack):
    """Base of the minimum-norm attacks: ``min_norms`` gives each sample's smallest adversarial norm."""

    kind = "min_norm"

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def min_norms(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Norm of the perturbation found for each sample; ``inf`` where the attack did not fool the model."""
        with _attack_context(model, x.device.type):
            x_adv = self.adversarial(model, x.detach().float(), y).detach()
            with torch.no_grad():
                fooled = model(x_adv).argmax(1) != y
        norms = perturbation_norm(x_adv - x, self.norm)
        return torch.where(fooled, norms, torch.full_like(norms, math.inf))


class AdvertorchMinNorm(MinNormAttack):
    """DDN (``advertorch.attacks.DDNL2Attack``) or C&W-L2 (``CarliniWagnerL2Attack``), L2.

    Args:
        attack_cls: import path of the advertorch attack.
        num_classes: passed to C&W (filled in from the model when ``auto``).
        **kwargs: the attack's own arguments (``nb_iter``, ``max_iterations``, ``learning_rate``...).
    """

    def __init__(
        self,
        name: str,
        eps: Sequence[float],
        attack_cls: str,
        norm: str = "l2",
        label: str | None = None,
        n_samples: int | None = None,
        auc_table: bool = True,
        **kwargs,
    ):
        super().__init__(name, norm, eps, label, n_samples, auc_table=auc_table)
        self.attack_cls, self.kwargs = attack_cls, kwargs
        self._cls = import_attack_class(attack_cls, name)

    def describe(self) -> dict:
        return {**super().describe(), "attack_cls": self.attack_cls, **self.kwargs}

    def adversarial(self, model, x, y):
        kwargs = dict(self.kwargs)
        if kwargs.get("num_classes") == "auto":
            with torch.no_grad():
                kwargs["num_classes"] = model(x[:1]).shape[1]
        return self._cls(model, clip_min=0.0, clip_max=1.0, **kwargs).perturb(x, y)


class FoolboxMinNorm(MinNormAttack):
    """A foolbox minimisation attack run unbounded (``epsilons=None``): DeepFool, Boundary, ...

    Args:
        attack_cls: import path in foolbox (``foolbox.attacks.LinfDeepFoolAttack``, ``foolbox.attacks.BoundaryAttack``).
        **kwargs: the attack's own arguments (``steps``, ``overshoot``...).
    """

    def __init__(
        self,
        name: str,
        norm: str,
        eps: Sequence[float],
        attack_cls: str,
        label: str | None = None,
        n_samples: int | None = None,
        gradient_free: bool = False,
        auc_table: bool = True,
        **kwargs,
    ):
        super().__init__(name, norm, eps, label, n_samples, gradient_free, auc_table=auc_table)
        self.attack_cls, self.kwargs = attack_cls, kwargs
        self._cls = import_attack_class(attack_cls, name)

    def describe(self) -> dict:
        return {**super().describe(), "attack_cls": self.attack_cls, **self.kwargs}

    def adversarial(self, model, x, y):
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
        _, clipped, _ = self._cls(**self.kwargs)(fmodel, x, y, epsilons=None)
        return clipped


Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]


class FoolboxBoundary(FoolboxMinNorm):
    """Boundary attack (Brendel et al. 2018; foolbox ``BoundaryAttack``), gradient-free, L2 (Table A4).

    foolbox starts it from blended uniform noise and refuses a batch in which that start fails for
    any sample; here the start runs first and only the samples it fooled go on to the Boundary
    attack (the others are robust: the attack found nothing).

    Args:
        init_steps: blending steps of the starting attack (``LinearSearchBlendedUniformNoiseAttack``).
        **kwargs: ``BoundaryAttack`` arguments (``steps``: 5000 as in Table A4).
    """

    def __init__(
        self,
        name: str,
        eps: Sequence[float],
        norm: str = "l2",
        init_steps: int = 50,
        label: str | None = None,
        n_samples: int | None = 100,
        auc_table: bool = True,
        **kwargs,
    ):
        super().__init__(
            name,
            norm,
            eps,
            "foolbox.attacks.BoundaryAttack",
            label,
            n_samples,
            gradient_free=True,
            auc_table=auc_table,
            **kwargs,
        )
        self.init_steps = int(init_steps)

    def adversarial(self, model, x, y):
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
        init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=self.init_steps)
        _, start, started = init(fmodel, x, y, epsilons=None)
        x_adv = x.clone()
        if started.any():
            _, found, _ = self._cls(**self.kwargs)(
                fmodel, x[started], y[started], epsilons=None, starting_points=start[started]
            )
            x_adv[started] = found
        return x_adv

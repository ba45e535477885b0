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
from collections.abc import Sequence

import torch
from torch import nn

from afd_lightning.attacks import attack_mode
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
    """The base of every evaluation attack: what it is (name, norm, ε list) and how it is run.

    It owns, for every ε-ball attack (:meth:`perturb`):

    * the ε = 0 shortcut: the clean images, no attack run and no random number drawn;
    * the attack mode: model in eval mode with frozen parameters, gradients on, float32 (autocast off),
      each module's previous mode restored afterwards;
    * the restarts: the attack runs ``restarts`` times, each run on the samples every earlier run
      left correctly classified; a sample counts as robust only if every run fails.

    A subclass implements :meth:`attack_once` (one run on a batch) and names only its own arguments;
    the options below are keyword-only and reach this class through ``**options``
    (:meth:`split_options` separates them from an attack library's own keyword arguments).

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
        restarts: runs per sample (see above); >= 1.
    """

    kind = "abstract"
    OPTIONS = ("label", "n_samples", "gradient_free", "iterative", "auc_table", "restarts")

    def __init__(
        self,
        name: str,
        norm: str,
        eps: Sequence[float],
        *,
        label: str | None = None,
        n_samples: int | None = None,
        gradient_free: bool = False,
        iterative: bool = True,
        auc_table: bool = True,
        restarts: int = 1,
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
        if isinstance(restarts, bool) or int(restarts) < 1:
            raise ConfigError(f"attack {name}: restarts must be >= 1, got {restarts}")
        self.restarts = int(restarts)

    @classmethod
    def split_options(cls, kwargs: dict) -> tuple[dict, dict]:
        """``kwargs`` split into (this base's options, the rest: an attack library's own arguments)."""
        options = {k: v for k, v in kwargs.items() if k in cls.OPTIONS}
        return options, {k: v for k, v in kwargs.items() if k not in cls.OPTIONS}

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

    def attack_once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        """One run of the attack at ``eps`` > 0 on float32 ``x`` (already in attack mode): adversarial examples."""
        raise NotImplementedError(f"{type(self).__name__} does not perturb at a given eps")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        """Adversarial examples within ``eps``; with restarts, the first run that fools the model wins."""
        if eps == 0:
            return x.detach().float()
        with _attack_context(model, x.device.type):
            x = x.detach().float()
            x_adv = self.attack_once(model, x, y, eps)
            for _ in range(self.restarts - 1):
                with torch.no_grad():
                    alive = model(x_adv).argmax(1) == y
                if not alive.any():
                    break
                x_adv[alive] = self.attack_once(model, x[alive], y[alive], eps)
        return x_adv

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {self.norm}, eps={self.eps})"


class MinNormAttack(EvalAttack):
    """Base of the minimum-norm attacks: ``min_norms`` gives each sample's smallest adversarial norm.

    One run gives the whole accuracy curve (robust at ε iff the norm found is > ε), so there are no restarts.
    """

    kind = "min_norm"

    def __init__(self, name: str, norm: str, eps: Sequence[float], **options):
        if options.get("restarts", 1) != 1:
            raise ConfigError(
                f"attack {name}: a minimum-norm attack has no restarts (got restarts={options['restarts']})"
            )
        super().__init__(name, norm, eps, **options)

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


class LibraryMinNorm(MinNormAttack):
    """A minimum-norm attack of an attack library (advertorch, foolbox): its class and its own arguments.

    Args:
        attack_cls: import path of the library's attack class.
        **kwargs: :class:`EvalAttack`'s options, then the attack's own arguments (kept in ``self.kwargs``).
    """

    def __init__(self, name: str, norm: str, eps: Sequence[float], attack_cls: str, **kwargs):
        options, self.kwargs = self.split_options(kwargs)
        super().__init__(name, norm, eps, **options)
        self.attack_cls = attack_cls
        self._cls = import_attack_class(attack_cls, name)

    def describe(self) -> dict:
        return {**super().describe(), "attack_cls": self.attack_cls, **self.kwargs}

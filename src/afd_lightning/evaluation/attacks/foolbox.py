"""ε-ball attacks from Foolbox 3 (the library of the AFD paper's evaluation, Table A3).

:class:`FoolboxNormBall` runs a Foolbox fixed-ε attack (``foolbox.attacks.L1ProjectedGradientDescentAttack``,
``LinfProjectedGradientDescentAttack``, ``L2ProjectedGradientDescentAttack``, ``FGSM``...) at one ε.

Why PGD-L1 runs here and not in advertorch: advertorch's ``L1PGDAttack`` (``l1_sparsity=None``)
changes one coordinate per step, which left 70% of a random CNN's images correct at L1 ε = 50
where Foolbox's dense L1 PGD (gradient scaled to unit L1 norm, steps of ``rel_stepsize * ε``, the
result scaled back into the ball) left 0% (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from afd_lightning.attacks.factory import import_attack_class
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks.base import EvalAttack, LibraryMinNorm
from afd_lightning.evaluation.attacks.boundary import SEARCH_ARGUMENTS, boundary_search


class FoolboxNormBall(EvalAttack):
    """A Foolbox fixed-ε attack, swept over ``eps``.

    Args:
        attack_cls: import path (``foolbox.attacks.L1ProjectedGradientDescentAttack``).
        **kwargs: :class:`EvalAttack`'s options (``restarts``, ``label``...), then the attack's own
            arguments (``steps``, ``rel_stepsize``, ``random_start``...); Foolbox's defaults otherwise.
    """

    kind = "norm_ball"

    def __init__(self, name: str, norm: str, eps: Sequence[float], attack_cls: str, **kwargs):
        options, self.kwargs = self.split_options(kwargs)
        super().__init__(name, norm, eps, **options)
        self.attack_cls = attack_cls
        cls = import_attack_class(attack_cls, name)
        try:
            self._attack = cls(**self.kwargs)
        except TypeError as err:
            raise ConfigError(f"attack {name}: {attack_cls} does not take these settings: {err}") from err

    def describe(self) -> dict:
        return {
            **super().describe(),
            "library": "foolbox",
            "attack_cls": self.attack_cls,
            "restarts": self.restarts,
            **self.kwargs,
        }

    def attack_once(self, model, x, y, eps):
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
        _, clipped, _ = self._attack(fmodel, x, y, epsilons=float(eps))
        return clipped.detach()


class FoolboxMinNorm(LibraryMinNorm):
    """A foolbox minimisation attack run unbounded (``epsilons=None``): DeepFool, Boundary, ...

    Args:
        attack_cls: import path in foolbox (``foolbox.attacks.LinfDeepFoolAttack``, ``foolbox.attacks.BoundaryAttack``).
        **kwargs: :class:`EvalAttack`'s options, then the attack's own arguments (``steps``, ``overshoot``...).
    """

    def adversarial(self, model, x, y):
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
        _, clipped, _ = self._cls(**self.kwargs)(fmodel, x, y, epsilons=None)
        return clipped


class FoolboxBoundary(FoolboxMinNorm):
    """Boundary attack (Brendel et al. 2018; foolbox ``BoundaryAttack``), gradient-free, L2 (Table A4).

    foolbox starts it from blended uniform noise and refuses a batch in which that start fails for
    any sample; here the start runs first and only the samples it fooled go on to the Boundary
    attack (the others are robust: the attack found nothing).

    With ``early_stop`` (the default) the search after the start is :func:`.boundary.boundary_search`:
    foolbox's steps and random draws, with each sample leaving the search once its best example is within
    the smallest ε > 0 of the sweep. Such a sample counts as not robust at every ε of the sweep whatever the
    search would find later (it can only get closer); every other sample follows foolbox's path (see
    :mod:`.boundary` for the one caveat, rounding by batch size). So the accuracy at each ε of the sweep is
    foolbox's, with fewer model evaluations, and the search itself has less overhead than foolbox's. A decided
    sample's norm is not searched further: the median minimum norm reported can be higher than foolbox's,
    and only when it is at or below that ε.

    Args:
        init_steps: blending steps of the starting attack (``LinearSearchBlendedUniformNoiseAttack``).
        early_stop: stop each sample once decided (above); false: foolbox's ``BoundaryAttack`` itself.
        **kwargs: ``BoundaryAttack`` arguments (``steps``: 5000 as in Table A4).
    """

    def __init__(
        self,
        name: str,
        eps: Sequence[float],
        norm: str = "l2",
        init_steps: int = 50,
        n_samples: int | None = 100,
        early_stop: bool = True,
        **kwargs,
    ):
        kwargs["gradient_free"] = True
        super().__init__(name, norm, eps, "foolbox.attacks.BoundaryAttack", n_samples=n_samples, **kwargs)
        self.init_steps = int(init_steps)
        self.early_stop = bool(early_stop)
        try:
            self._cls(**self.kwargs)
        except TypeError as err:
            raise ConfigError(
                f"attack {name}: foolbox.attacks.BoundaryAttack does not take these settings: {err}"
            ) from err
        other = sorted(set(self.kwargs) - set(SEARCH_ARGUMENTS))
        if self.early_stop and other:
            raise ConfigError(
                f"attack {name}: early_stop=true runs our search, which takes {', '.join(SEARCH_ARGUMENTS)} "
                f"(got {', '.join(other)}); early_stop=false runs foolbox's BoundaryAttack itself"
            )

    def describe(self) -> dict:
        stop = {"stop_at": self.stop_at} if self.early_stop else {}
        return {**super().describe(), "init_steps": self.init_steps, "early_stop": self.early_stop, **stop}

    @property
    def stop_at(self) -> float | None:
        """The smallest ε > 0 of the sweep: a sample whose example is within it is decided at every ε."""
        return min((e for e in self.eps if e > 0), default=None)

    def adversarial(self, model, x, y):
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
        init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=self.init_steps)
        _, start, started = init(fmodel, x, y, epsilons=None)
        x_adv = x.clone()
        if started.any():
            if self.early_stop:
                found = boundary_search(
                    model, x[started], y[started], start[started], stop_at=self.stop_at, norm=self.norm, **self.kwargs
                )
            else:
                _, found, _ = self._cls(**self.kwargs)(
                    fmodel, x[started], y[started], epsilons=None, starting_points=start[started]
                )
            x_adv[started] = found
        return x_adv

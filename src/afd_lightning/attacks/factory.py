"""Training- and validation-time adversarial examples from advertorch attacks, built by Hydra.

Every attack runs through :meth:`AttackFactory.__call__`, which enforces the rules that keep
training honest and cheap:

* the model is in eval mode while the attack runs (BatchNorm running statistics untouched)
  and each submodule's previous mode is restored afterwards;
* parameters do not require grad during the attack, so advertorch's ``loss.backward()`` only
  computes the gradient with respect to the input (no parameter ``.grad`` is touched);
* the attack runs in float32 with autocast off, even when training in bf16/fp16;
* gradients are enabled inside, so it also works from validation/test loops.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from afd_lightning.errors import ConfigError
from afd_lightning.process.compat import advertorch


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Parameters of ``module`` do not require grad inside the block (their grads are never computed)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration of the block; restores both exactly."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with frozen(model):
            yield model
    finally:
        for m, training in modes:
            m.training = training


def import_attack_class(path: str, name: str | None = None) -> type:
    """The class at import path ``path`` (advertorch's shim applied first); a ConfigError if it is not there."""
    module_name, _, class_name = path.rpartition(".")
    advertorch()  # the shim must be in place before any advertorch module is imported
    import importlib

    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        what = f"attack {name}: " if name else ""
        raise ConfigError(f"{what}attack_cls={path!r} cannot be imported: {err}") from err


class AttackFactory:
    """An attack recipe: an advertorch attack class plus its budget, validated up front.

    Args:
        attack_cls: import path of an advertorch attack (e.g. ``advertorch.attacks.LinfPGDAttack``) or of a
            class with the same interface (``afd_lightning.attacks.apgd.APGDCE``; a ``check_options``
            static method on it validates the settings here, before training starts).
        eps: perturbation budget in the attack's norm, images in [0, 1].
        steps: iterations (advertorch ``nb_iter``); None for single-step attacks such as FGSM.
        step_size: step per iteration (advertorch ``eps_iter``); None for single-step attacks.
        rand_init: start from a random point in the eps-ball (PGD); None for attacks without it.
        clip_min, clip_max: valid pixel range.
        warmup_epochs: ε warm-up (ramp) for training: in epoch ``e`` (0-based) of the first ``warmup_epochs``
            the attack uses ``eps * (e + 1) / warmup_epochs`` (and the step size scaled alike, so the step
            stays the same fraction of ε), and the full ``eps`` from epoch ``warmup_epochs - 1`` on. A function
            of the epoch only, so a resumed run continues the ramp exactly. 0 or 1: no warm-up. It applies
            when the caller passes ``epoch=`` (the training methods do; evaluation never does).
        **extra: further keyword arguments of the attack class (e.g. ``decay_factor`` for MIM).
    """

    def __init__(
        self,
        attack_cls: str,
        eps: float,
        steps: int | None = None,
        step_size: float | None = None,
        rand_init: bool | None = None,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        name: str | None = None,
        warmup_epochs: int = 0,
        **extra,
    ):
        self.name = name or attack_cls.rpartition(".")[2]
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ConfigError(
                f"attack {self.name}: warmup_epochs must be an integer >= 0 (epochs over which eps rises to its "
                f"value; 0 for none), got {warmup_epochs!r}"
            )
        self.warmup_epochs = int(warmup_epochs)
        if eps is None or not math.isfinite(float(eps)) or float(eps) < 0:
            raise ConfigError(f"attack {self.name}: eps must be a finite number >= 0, got {eps!r}")
        if steps is not None and int(steps) < 1:
            raise ConfigError(f"attack {self.name}: steps must be >= 1, got {steps!r}")
        if step_size is not None and not float(step_size) > 0:
            raise ConfigError(f"attack {self.name}: step_size must be > 0, got {step_size!r}")
        if not clip_min < clip_max:
            raise ConfigError(f"attack {self.name}: clip_min={clip_min} must be below clip_max={clip_max}")
        self.attack_cls = import_attack_class(attack_cls, self.name)
        check_options = getattr(self.attack_cls, "check_options", None)  # our own attacks validate up front
        if check_options is not None:
            check_options(clip_min=clip_min, clip_max=clip_max, **extra)
        self.eps = float(eps)
        self.steps = None if steps is None else int(steps)
        self.step_size = None if step_size is None else float(step_size)
        self.rand_init = rand_init
        self.clip_min, self.clip_max = float(clip_min), float(clip_max)
        self.extra = dict(extra)

    def __repr__(self) -> str:
        warmup = f", warmup_epochs={self.warmup_epochs}" if self.warmup_epochs > 1 else ""
        return f"AttackFactory({self.name}, eps={self.eps}, steps={self.steps}, step_size={self.step_size}{warmup})"

    def eps_scale(self, epoch: int | None) -> float:
        """The fraction of ``eps`` used in training epoch ``epoch`` (0-based; None: the full eps)."""
        if epoch is None or self.warmup_epochs <= 1:
            return 1.0
        return min(1.0, (int(epoch) + 1) / self.warmup_epochs)

    def eps_at(self, epoch: int | None) -> float:
        """The ε used in training epoch ``epoch`` (see ``warmup_epochs``)."""
        return self.eps * self.eps_scale(epoch)

    def build(self, predict: Callable, loss_fn: Callable | None = None, scale: float = 1.0):
        """The advertorch attack object for ``predict`` (no safety context: prefer calling the factory);
        ``scale`` multiplies ε and the step size (the warm-up)."""
        kwargs = dict(eps=self.eps * scale, clip_min=self.clip_min, clip_max=self.clip_max, **self.extra)
        if self.steps is not None:
            kwargs["nb_iter"] = self.steps
        if self.step_size is not None:
            kwargs["eps_iter"] = self.step_size * scale
        if self.rand_init is not None:
            kwargs["rand_init"] = self.rand_init
        return self.attack_cls(predict, loss_fn=loss_fn, **kwargs)

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_fn: Callable | None = None,
        delta_init: torch.Tensor | None = None,
        epoch: int | None = None,
    ) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``: a detached float32 tensor inside the eps-ball and [clip_min, clip_max].

        ``loss_fn(logits, y)`` replaces the attack's default (summed cross-entropy); ``y`` may then be
        any target, e.g. clean probabilities for TRADES.  ``delta_init`` starts an iterative attack
        from that perturbation instead of the attack's own initialisation.  ``epoch``: the training
        epoch, for the ε warm-up (``warmup_epochs``).
        """
        scale = self.eps_scale(epoch)
        if self.eps * scale == 0:
            return x.detach().float()
        with attack_mode(model), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            x32 = x.detach().float()
            attack = self.build(model, loss_fn, scale)
            if delta_init is None:
                x_adv = attack.perturb(x32, y)
            else:
                x_adv = self._perturb_from(attack, x32, y, delta_init)
        return x_adv.detach()

    def _perturb_from(self, attack, x: torch.Tensor, y: torch.Tensor, delta_init: torch.Tensor) -> torch.Tensor:
        if not hasattr(attack, "ord") or self.steps is None:
            raise ConfigError(f"attack {self.name} is not an iterative PGD-style attack; it cannot take delta_init")
        perturb_iterative = advertorch().attacks.iterative_projected_gradient.perturb_iterative
        delta = delta_init.detach().float().clone().requires_grad_(True)
        return perturb_iterative(
            x,
            y,
            attack.predict,
            nb_iter=attack.nb_iter,
            eps=attack.eps,
            eps_iter=attack.eps_iter,
            loss_fn=attack.loss_fn,
            delta_init=delta,
            minimize=False,
            ord=attack.ord,
            clip_min=attack.clip_min,
            clip_max=attack.clip_max,
        )

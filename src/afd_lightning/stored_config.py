"""Configs read back from a file (a checkpoint's stored run config): data, never code.

Every ``_target_`` in them, at any depth (``_args_``, ``_partial_`` nodes, unused fields), must be on
:func:`allowed_targets`, the package's own networks, data modules, methods and attack factories plus
``torch.optim`` optimizers and schedulers. Anything else is refused with an error naming the key,
before anything is imported or called.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from afd_lightning.errors import AFDUserError
from afd_lightning.runtime import instantiate


class UnsafeConfigError(AFDUserError):
    """A stored config names something that is not on the allow-list of buildable objects."""


# Public names of these modules are what a stored config may build (filtered to the kinds below).
_OWN_MODULES = ("afd_lightning.nets", "afd_lightning.data", "afd_lightning.methods", "afd_lightning.attacks")


@cache
def allowed_targets() -> dict[str, Any]:
    """``_target_`` strings a stored config may name, mapped to the objects they build.

    The package's own networks (classes and factory functions exported by ``afd_lightning.nets``),
    data modules, training methods and attack factories, under their public name and their
    defining module's name; and the optimizers and learning-rate schedulers of ``torch.optim``.
    """
    import importlib
    import inspect

    import pytorch_lightning as pl
    import torch
    from torch import nn

    from afd_lightning.attacks import AttackFactory

    kinds = (nn.Module, pl.LightningDataModule, pl.LightningModule, AttackFactory)
    allowed: dict[str, Any] = {}
    for module_name in _OWN_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            own_function = inspect.isfunction(obj) and module_name == "afd_lightning.nets"
            if own_function or (inspect.isclass(obj) and issubclass(obj, kinds)):
                allowed[f"{module_name}.{name}"] = obj
                allowed[f"{obj.__module__}.{obj.__qualname__}"] = obj
    schedulers = torch.optim.lr_scheduler
    for module, base in ((torch.optim, torch.optim.Optimizer), (schedulers, schedulers.LRScheduler)):
        for name in dir(module):
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
                allowed[f"{module.__name__}.{name}"] = obj
    return allowed


@cache
def allowed_attack_classes() -> frozenset[str]:
    """``attack_cls`` strings a stored config may name: advertorch's attack classes and our own."""
    import inspect

    from afd_lightning.attacks import APGDCE
    from afd_lightning.compat import advertorch

    attacks = advertorch().attacks
    names = {
        f"advertorch.attacks.{n}"
        for n, obj in vars(attacks).items()
        if inspect.isclass(obj) and issubclass(obj, attacks.Attack)
    }
    return frozenset(names | {"afd_lightning.attacks.APGDCE", f"{APGDCE.__module__}.{APGDCE.__qualname__}"})


def check_stored(node, where: str = "config", prefix: str = "") -> None:
    """Refuse a stored config if any ``_target_`` at any depth is not on :func:`allowed_targets`.

    Only strings are compared: nothing the file names is imported, located or called. ``prefix``
    names the node inside the whole stored config (``model``, ``dataset``) in the error.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    allowed = allowed_targets()

    def walk(value, path: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if key == "_target_" and (not isinstance(item, str) or item not in allowed):
                    raise UnsafeConfigError(
                        f"{where}: {sub}={item!r} is not something afd-lightning builds from a stored config "
                        "(only the package's own networks, data modules, methods and attacks, and torch.optim "
                        "optimizers/schedulers are allowed), so the file was refused. A checkpoint written by "
                        "afd-lightning never names anything else: do not use this file."
                    )
                if key == "attack_cls" and (not isinstance(item, str) or item not in allowed_attack_classes()):
                    raise UnsafeConfigError(
                        f"{where}: {sub}={item!r} is not an attack class afd-lightning builds from a stored config "
                        "(advertorch's attacks and afd_lightning.attacks.APGDCE only), so the file was refused."
                    )
                walk(item, sub)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(node, prefix)


def instantiate_stored(node, where: str = "stored config", prefix: str = "", **kwargs):
    """Build an object from a config read out of a file, only through the allow-list (see module doc)."""
    check_stored(node, where, prefix)
    return instantiate(node, **kwargs)

"""What a stored config may name: per slot, the objects it may build, and what ``trust`` adds to the model slot.

Each slot has its own table, made on first use and importing only what that slot needs: the model slot
imports :mod:`afd_lightning.nets` alone (so ``load_classifier`` never imports Lightning), the dataset and
method slots import their packages (and with them Lightning) only when a caller checks them.

* ``model`` / ``body``: the networks :mod:`afd_lightning.nets` exports that carry a size function
  (:func:`afd_lightning.nets.size.network`), so each is sized before it is built;
* ``discriminator``: :class:`~afd_lightning.nets.AdversarialDecoder`;
* ``dataset``, ``method``, ``attack`` / ``eval_attack``: the LightningDataModules, LightningModules and
  attack factories that :mod:`afd_lightning.data`, :mod:`afd_lightning.methods` and
  :mod:`afd_lightning.attacks` export;
* ``optimizer``, ``scheduler``: the optimizers and learning-rate schedulers of ``torch.optim``.

Every object is listed under its public name (``afd_lightning.nets.resnet18``) and its defining module's
(``afd_lightning.nets.resnet.resnet18``); names are compared whole, never as prefixes (no attribute walks).
The packages are imported by name at run time, as Hydra does, so these tables are not import edges.

**Trust** (:func:`trusted_network`): a list of packages given by the caller, never read from a file. A model
target outside afd-lightning is reached only if it names a *class* (or a builder registered with
:func:`~afd_lightning.nets.size.network`) of a trusted package whose instances are ``nn.Module``\\ s with the
network protocol's methods, checked before anything is called. The module it names is imported, nothing
else; ``__main__`` and private modules (a part starting with ``_``) are refused before any import.
"""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from typing import Any

from afd_lightning.store.plain import OutsideCodeError, UnsafeConfigError

NETWORK_SLOTS = ("model", "body")
SLOTS_OF_PACKAGES = {
    "dataset": "afd_lightning.data",
    "method": "afd_lightning.methods",
    "attack": "afd_lightning.attacks",
    "eval_attack": "afd_lightning.attacks",
}
ALL_SLOTS = ("model", "body", "discriminator", "dataset", "method", "attack", "eval_attack", "optimizer", "scheduler")


def _names(module_name: str, name: str, obj) -> dict[str, Any]:
    return {f"{module_name}.{name}": obj, f"{obj.__module__}.{obj.__qualname__}": obj}


@cache
def _networks() -> dict[str, dict[str, Any]]:
    from afd_lightning import nets
    from afd_lightning.nets.size import size_function

    model: dict[str, Any] = {}
    discriminator: dict[str, Any] = {}
    for name in nets.__all__:
        obj = getattr(nets, name)
        if size_function(obj) is None:
            continue  # not a registered network builder (Normalize, the protocol, check_network)
        (discriminator if obj is nets.AdversarialDecoder else model).update(_names("afd_lightning.nets", name, obj))
    return {"model": model, "body": model, "discriminator": discriminator}


@cache
def _package_classes(slot: str) -> dict[str, Any]:
    """The classes of the slot's package (data modules, methods or attack factories) that the slot may build."""
    module_name = SLOTS_OF_PACKAGES[slot]
    module = importlib.import_module(module_name)
    if slot == "dataset":
        import pytorch_lightning as pl

        kind: type = pl.LightningDataModule
    elif slot == "method":
        import pytorch_lightning as pl

        kind = pl.LightningModule
    else:
        kind = module.AttackFactory
    out: dict[str, Any] = {}
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, kind) and not getattr(obj, "_is_protocol", False):
            out.update(_names(module_name, name, obj))
    return out


@cache
def _torch_optim(slot: str) -> dict[str, Any]:
    import torch

    module, base = (
        (torch.optim, torch.optim.Optimizer)
        if slot == "optimizer"
        else (torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
    )
    return {
        f"{module.__name__}.{name}": obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, base) and obj is not base
    }


def targets_for(slot: str) -> dict[str, Any]:
    """``_target_`` strings the ``slot`` may hold, mapped to the objects they build (imports only what it needs)."""
    if slot in ("model", "body", "discriminator"):
        return _networks()[slot]
    if slot in SLOTS_OF_PACKAGES:
        return _package_classes(slot)
    if slot in ("optimizer", "scheduler"):
        return _torch_optim(slot)
    raise ValueError(f"no slot {slot!r}; slots: {', '.join(ALL_SLOTS)}")


@cache
def allowed_targets() -> dict[str, Any]:
    """Every ``_target_`` string any slot may hold (imports every slot's package, Lightning with them)."""
    allowed: dict[str, Any] = {}
    for slot in ALL_SLOTS:
        allowed.update(targets_for(slot))
    return allowed


def slot_targets() -> dict[str, frozenset[str]]:
    """For each slot, the ``_target_`` strings it may hold (every slot's table: imports every package)."""
    return {slot: frozenset(targets_for(slot)) for slot in ALL_SLOTS}


def slots_holding(target: str) -> list[str]:
    """The slots whose table holds ``target`` (to say where a misplaced target belongs)."""
    if not target.startswith(("afd_lightning.", "torch.optim.")):
        return []  # nothing of ours: no need to import every package to say so
    return [slot for slot in ALL_SLOTS if slot != "body" and target in targets_for(slot)]


# ------------------------------------------------------------------------------------------ attack classes
@cache
def _attack_class_table() -> dict[str, type]:
    from afd_lightning.attacks import APGDCE
    from afd_lightning.process.compat import advertorch

    attacks = advertorch().attacks
    table = {
        f"advertorch.attacks.{n}": obj
        for n, obj in vars(attacks).items()
        if inspect.isclass(obj) and issubclass(obj, attacks.Attack)
    }
    table["afd_lightning.attacks.APGDCE"] = APGDCE
    table[f"{APGDCE.__module__}.{APGDCE.__qualname__}"] = APGDCE
    return table


def attack_class(name: str) -> type | None:
    """The attack class an attack factory's ``attack_cls`` may name, or None."""
    return _attack_class_table().get(name)


def allowed_attack_classes() -> frozenset[str]:
    """``attack_cls`` strings a stored config may name: advertorch's attack classes and our own."""
    return frozenset(_attack_class_table())


# ------------------------------------------------------------------------------------------------- trust
def normalise_trust(trust) -> tuple[str, ...]:
    """``trust`` as a tuple of module names (a single string is one name); refuses what is not a module name."""
    from afd_lightning.errors import AFDUserError

    if trust is None:
        return ()
    if isinstance(trust, str):
        trust = [trust]
    out = []
    for prefix in trust:
        prefix = str(prefix).strip()
        if not prefix or not all(part.isidentifier() for part in prefix.split(".")):
            raise AFDUserError(f"trust={prefix!r} is not a module name (e.g. trust=['mynets'])")
        if prefix == "afd_lightning" or prefix.startswith("afd_lightning."):
            raise AFDUserError(f"trust={prefix!r}: afd-lightning's own networks need no trust; name your own package")
        if any(part.startswith("_") for part in prefix.split(".")):
            raise AFDUserError(f"trust={prefix!r}: a private module or __main__ cannot be trusted; name your package")
        out.append(prefix)
    return tuple(out)


def _outside(target: str, trust: tuple[str, ...], key: str, where: str) -> OutsideCodeError:
    package = target.split(".")[0]
    if not trust:
        return OutsideCodeError(
            f"{where}: {key}={target!r} names code outside afd-lightning. If it is your own network, pass "
            f"trust=[{package!r}] (load_classifier(..., trust=[...]), load_from_checkpoint(..., trust=[...]) or "
            f"eval.py trust='[{package}]'); the list comes from you, never from the file. Otherwise do not use "
            "this file."
        )
    return OutsideCodeError(
        f"{where}: {key}={target!r} is in module {target.rpartition('.')[0]}, which is not trusted: trust="
        f"{list(trust)} names other packages. If it is your own network, add {package!r} to trust; otherwise do not "
        "use this file."
    )


def trusted_network(target: str, trust: tuple[str, ...], key: str, where: str):
    """The class (or registered builder) ``target`` names in a package the caller trusts; refused otherwise.

    Checked in this order, each refusal naming the key: the target is covered by a trusted package; its module
    path is public (no ``__main__``, no part starting with ``_``) and names a module that can be found; that
    module (and nothing else) is imported; the name is defined in the trusted package (no attribute walks to
    objects imported into it); it is an ``nn.Module`` class with ``forward`` and ``forward_with_embedding`` (the
    network protocol, :mod:`afd_lightning.nets.protocol`) or a function registered as a network builder. Nothing
    is called here.
    """
    import importlib.util

    from torch import nn

    from afd_lightning.nets.size import size_function

    prefix = next((p for p in trust if target == p or target.startswith(p + ".")), None)
    if prefix is None:
        raise _outside(target, trust, key, where)
    module_name, _, name = target.rpartition(".")
    parts = module_name.split(".") if module_name else []
    if not parts or not all(p.isidentifier() for p in parts) or not name.isidentifier():
        raise UnsafeConfigError(f"{where}: {key}={target!r} is not a module path followed by a class name")
    private = next((p for p in (*parts, name) if p.startswith("_")), None)
    if private is not None:
        raise UnsafeConfigError(
            f"{where}: {key}={target!r} goes through {private!r}, a private name or __main__; only public classes "
            "of public modules of a trusted package are built, so nothing was imported"
        )
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as err:  # a parent package that is missing, or not a package
        found = None
        missing = getattr(err, "name", None) or module_name
    else:
        missing = module_name
    if found is None:
        raise UnsafeConfigError(
            f"{where}: {key}={target!r}: module {missing} was not found (trust={list(trust)}). Install your package "
            "or put the folder that holds it on PYTHONPATH."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UnsafeConfigError(f"{where}: {key}={target!r}: module {module_name} cannot be imported ({err})") from err
    obj = vars(module).get(name)  # the module's own namespace: no module-level __getattr__ runs
    if obj is None:
        raise UnsafeConfigError(f"{where}: {key}={target!r}: module {module_name} defines no {name}")
    defined_in = getattr(obj, "__module__", None) or ""
    if not (defined_in == prefix or defined_in.startswith(prefix + ".")):
        raise UnsafeConfigError(
            f"{where}: {key}={target!r} is not defined in the trusted package {prefix!r} (it comes from "
            f"{defined_in or 'nowhere'}), so the file was refused"
        )
    if inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            raise UnsafeConfigError(f"{where}: {key}={target!r} is a class but not an nn.Module, so it was not built")
        lacking = [m for m in ("forward", "forward_with_embedding") if not callable(getattr(obj, m, None))]
        if getattr(obj, "forward", None) is nn.Module.forward:
            lacking.insert(0, "forward")
        if lacking:
            raise UnsafeConfigError(
                f"{where}: {key}={target!r} is an nn.Module without {', '.join(dict.fromkeys(lacking))}, so it is "
                "not a network afd-lightning builds (the network protocol, docs/byon.md)"
            )
        return obj
    if inspect.isfunction(obj) and size_function(obj) is not None:
        return obj
    raise UnsafeConfigError(
        f"{where}: {key}={target!r} is not a network class; a function is built only when registered as a network "
        "builder (@afd_lightning.nets.network(size_function), docs/byon.md), so nothing was called"
    )

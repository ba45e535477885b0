"""Building a checked stored config: sized first, then called with exactly the values that were checked.

A network of the allow-list is sized by its size function (:mod:`afd_lightning.nets.size`) from the checked
arguments, before any module exists, and refused above :data:`MAX_PARAMETERS` tensor elements or
:data:`MAX_MODULES` modules. A network of a package the caller trusts has no size function unless its author
registered one; it is built on the ``meta`` device first (the caller vouches for its code), counted, and its
instance checked against the network protocol, before it is built for real.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from afd_lightning.store.allow import normalise_trust, targets_for
from afd_lightning.store.plain import StoredConfigLimitError, UnsafeConfigError
from afd_lightning.store.schema import HYDRA_KEYS, RUN_SWITCHES, SLOTS, checked_slot

# The largest network of the paper (WRN-34-10) has 46.2 M tensor elements (parameters and buffers).
MAX_PARAMETERS = 200_000_000
# WRN-34-10 has 118 modules, ResNet-18 72; ResNet-1202, the deepest CIFAR network of He et al. (2016), about 4,200.
# Each module is a Python object of about 2.5 KB that takes about 0.3 ms to make (10,000: about 25 MB and a few
# seconds here), so this bound keeps a crafted depth from taking gigabytes (100,000 blocks took 1.5 GB in 30 s).
MAX_MODULES = 10_000


def build(checked: Any, resolved: Mapping[str, Any] | None = None, **kwargs):
    """Build a checked plain config: ``_target_`` nodes are called with their built arguments (no Hydra).

    ``resolved`` maps the ``_target_`` strings to the objects the check resolved (trusted networks among them);
    without it only the allow-list's objects are built.
    """
    if isinstance(checked, list):
        return [build(v, resolved) for v in checked]
    if not isinstance(checked, dict) or "_target_" not in checked:
        return checked
    target = checked["_target_"]
    obj = (resolved or {}).get(target) or _allowed(target)
    arguments = {k: build(v, resolved) for k, v in checked.items() if k not in HYDRA_KEYS}
    arguments.update(kwargs)
    if checked.get("_partial_"):
        return functools.partial(obj, **arguments)
    return obj(**arguments)


def _allowed(target: str):
    from afd_lightning.store.allow import allowed_targets

    found = allowed_targets().get(target)
    if found is None:
        raise UnsafeConfigError(f"{target!r} was not checked, so it is not built")
    return found


# ------------------------------------------------------------------------------------------------ sizes
def network_size(checked: dict, resolved: Mapping[str, Any], where: str, path: str = "model"):
    """The :class:`~afd_lightning.nets.size.NetworkSize` of a checked network config, or None when its builder has
    no size function (a trusted network of yours). Nested networks (``body``) are sized first."""
    from afd_lightning.nets.size import size_function

    size = size_function(resolved.get(checked["_target_"]))
    if size is None:
        return None
    arguments = {}
    for key, value in checked.items():
        if key in HYDRA_KEYS or key in RUN_SWITCHES:
            continue
        if isinstance(value, dict) and "_target_" in value:
            value = network_size(value, resolved, where, f"{path}.{key}")
            if value is None:
                return None
        arguments[key] = value
    try:
        return size(**arguments)
    except (TypeError, ValueError) as err:
        raise UnsafeConfigError(f"{where}: the stored {path} config does not describe a network ({err})") from err


def check_size(size, where: str, what: str = "network") -> None:
    """Refuse a network above :data:`MAX_PARAMETERS` tensor elements or :data:`MAX_MODULES` modules."""
    if size.elements > MAX_PARAMETERS:
        raise StoredConfigLimitError(
            f"{where}: the stored config describes a {what} of {size.elements:,} parameters, more than the limit of "
            f"{MAX_PARAMETERS:,} (afd_lightning.store.build.MAX_PARAMETERS), so nothing was built"
        )
    if size.modules > MAX_MODULES:
        raise StoredConfigLimitError(
            f"{where}: the stored config describes a {what} of {size.modules:,} modules, more than the limit of "
            f"{MAX_MODULES:,} (afd_lightning.store.build.MAX_MODULES), so nothing was built"
        )


def _measured(checked: dict, resolved: Mapping[str, Any], where: str):
    """Build a trusted network without a size function on the ``meta`` device, count it, check its members."""
    import torch

    from afd_lightning.nets.protocol import interface_problems
    from afd_lightning.nets.size import NetworkSize

    with torch.device("meta"):
        try:
            model = build(checked, resolved)
        except (TypeError, ValueError, RuntimeError) as err:
            raise UnsafeConfigError(f"{where}: the stored model config does not build a network ({err})") from err
    problems = interface_problems(model)
    if problems:
        raise UnsafeConfigError(
            f"{where}: {checked['_target_']} does not build a network afd-lightning can use: {'; '.join(problems)}"
        )
    elements = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    return NetworkSize(elements, sum(1 for _ in model.modules()))


def check_stored_network(node, where: str = "stored config", trust=(), prefix: str = "model"):
    """(checked config without throughput switches, resolved targets, size) of a stored model config, refused above
    the limits; nothing of the allow-list is built (a trusted network without a size function: on ``meta``)."""
    checked, resolved = checked_slot(node, "model", where, prefix, trust=normalise_trust(trust))
    checked = {k: v for k, v in checked.items() if k not in RUN_SWITCHES}
    size = network_size(checked, resolved, where, prefix)
    if size is None:
        size = _measured(checked, resolved, where)
    check_size(size, where)
    return checked, resolved, size


def build_stored_model(node, where: str = "stored config", trust=(), prefix: str = "model"):
    """The network of a stored model config: checked, sized (before building), then built without throughput switches."""
    checked, resolved, _ = check_stored_network(node, where, trust, prefix)
    try:
        model = build(checked, resolved)
    except (TypeError, ValueError) as err:
        raise UnsafeConfigError(f"{where}: the stored model config does not build a network ({err})") from err
    if hasattr(model, "encoder"):
        model.channels_last = False
    return model


def instantiate_stored(node, where: str = "stored config", prefix: str = "", user=None, **kwargs):
    """Build one slot of a config read out of a file, only through its schema.

    ``prefix`` names the slot (``dataset``, ``attack``, ``eval_attack``, ``method``); ``user`` holds the
    caller's values for arguments never taken from a file (``data_dir``, ``download``...); ``kwargs``
    are built objects passed on (a method's model and attacks).
    """
    slot = prefix.rsplit(".", 1)[-1] if prefix else _slot_of(node)
    prefix = prefix or slot
    if slot == "model":
        return build_stored_model(node, where, prefix=prefix)
    if slot not in SLOTS:
        raise ValueError(f"instantiate_stored: unknown slot {prefix!r}")
    checked, resolved = checked_slot(node, slot, where, prefix, user=user)
    if slot == "method" and isinstance(checked.get("discriminator"), dict) and "model" in kwargs:
        _check_discriminator_size(checked["discriminator"], resolved, kwargs["model"], where, f"{prefix}.discriminator")
    return build(checked, resolved, **kwargs)


def _slot_of(node) -> str:
    """The slot a node without a named place fills, from its ``_target_`` (a method, dataset, attack or model)."""
    target = node.get("_target_") if isinstance(node, Mapping) else None
    if isinstance(target, str):
        for slot in ("method", "dataset", "attack", "model"):
            if target in targets_for(slot):
                return slot
    return "model"  # anything else is refused there, naming the key


def _check_discriminator_size(checked: dict, resolved: Mapping[str, Any], model, where: str, path: str) -> None:
    embed_dim = getattr(model, "embed_dim", None)
    if not isinstance(embed_dim, int):
        return
    size = network_size({**checked, "embed_dim": embed_dim}, resolved, where, path)
    if size is not None:
        check_size(size, where, "discriminator")

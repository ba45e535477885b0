"""Plain values out of a file: a bounded copy of a stored config, a bounded walk of a checkpoint, and their errors.

The first step of reading anything a file holds (:mod:`afd_lightning.store.stored_config` says the whole rule):
turn it into dicts, lists, strings, numbers, booleans and nulls, nothing resolved, within bounds on size and
nesting that refuse *before* Python's recursion limit does. Every refusal is one line (an
:class:`~afd_lightning.errors.AFDUserError`) naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from afd_lightning.errors import AFDUserError

# A stored run config has a few hundred nodes; a file asking for more is not one of ours.
MAX_NODES = 20_000
# A stored run config nests 4 levels deep (method.optimizer_enc.lr, dataset.meta.mean[0]), a Lightning checkpoint 7
# (loops.fit_loop.epoch_loop...); Python's recursion limit (1,000) is never approached.
MAX_DEPTH = 32
MAX_STRING = 1_000
MAX_LIST = 10_000
MAX_INT = 2**31


class UnsafeConfigError(AFDUserError):
    """A stored config names something that is not on the allow-list of buildable objects, or a value of the wrong kind."""


class OutsideCodeError(UnsafeConfigError):
    """A stored config's network names code outside afd-lightning that the caller did not trust."""


class StoredConfigLimitError(UnsafeConfigError):
    """A stored config asks for more than a bound allows (nodes, depth, parameters, modules)."""


def shown(path: str, limit: int = 120) -> str:
    """A key path cut to ``limit`` characters (a crafted path 900 levels deep stays one readable line)."""
    return path if len(path) <= limit else f"{path[: limit // 2]}...{path[-limit // 2 :]}"


def plain(node, where: str = "stored config", prefix: str = "") -> Any:
    """A fresh copy of ``node`` made of dicts, lists, str, int, float, bool and None only.

    Refuses interpolations (``${``), other types, non-string keys, cycles, nesting deeper than
    :data:`MAX_DEPTH` and more than :data:`MAX_NODES` nodes (shared references count each time they are
    used), naming the key. OmegaConf nodes are converted with resolvers off.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    count = 0
    active: set[int] = set()

    def walk(value, path: str, depth: int):
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise StoredConfigLimitError(
                f"{where}: the stored config has more than {MAX_NODES} nodes (shared references count each time "
                f"they are used), at {shown(path) or 'the top'}; a config written by train.py has a few hundred, so "
                "the file was refused"
            )
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise UnsafeConfigError(f"{where}: {shown(path)}={value} is out of range (|value| <= {MAX_INT})")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise UnsafeConfigError(f"{where}: {shown(path)}={value} is not a finite number")
            return value
        if isinstance(value, str):
            if "${" in value:
                raise UnsafeConfigError(
                    f"{where}: {shown(path)}={value[:80]!r} holds an interpolation (${{...}}); a stored config is "
                    "written resolved and is never resolved on load, so the file was refused"
                )
            if len(value) > MAX_STRING:
                raise UnsafeConfigError(
                    f"{where}: {shown(path)} is a string of {len(value)} characters (at most {MAX_STRING})"
                )
            return value
        if isinstance(value, (Mapping, list, tuple)):
            if depth >= MAX_DEPTH:
                raise StoredConfigLimitError(
                    f"{where}: {shown(path)} is nested more than {MAX_DEPTH} levels deep; a config written by "
                    "train.py nests 4, so the file was refused"
                )
            if id(value) in active:
                raise UnsafeConfigError(f"{where}: {shown(path) or 'the config'} contains itself (a cycle)")
            active.add(id(value))
            try:
                if isinstance(value, Mapping):
                    out = {}
                    for key, item in value.items():
                        if not isinstance(key, str) or "${" in key or len(key) > MAX_STRING:
                            raise UnsafeConfigError(
                                f"{where}: {shown(path) or 'the config'} has the key {str(key)[:80]!r} (keys are "
                                "plain names)"
                            )
                        out[key] = walk(item, f"{path}.{key}" if path else key, depth + 1)
                    return out
                if len(value) > MAX_LIST:
                    raise UnsafeConfigError(f"{where}: {shown(path)} has {len(value)} entries (at most {MAX_LIST})")
                return [walk(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
            finally:
                active.discard(id(value))
        raise UnsafeConfigError(
            f"{where}: {shown(path)}={type(value).__name__} is not plain data (dicts, lists, strings, numbers, "
            "booleans, null)"
        )

    return walk(node, prefix, 0)


def check_tree(value: Any, where: str, max_depth: int = MAX_DEPTH, max_nodes: int = 2_000_000) -> None:
    """Refuse nesting deeper than ``max_depth`` or more than ``max_nodes`` values in ``value``, naming the key.

    An iterative walk (never Python's recursion limit), for whole checkpoints: dicts, lists and tuples are
    walked, anything else (tensors, numbers, strings) is a leaf. A genuine checkpoint nests 7 levels deep.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    nodes = 0
    while stack:
        node, depth, path = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise StoredConfigLimitError(
                f"{where} holds more than {max_nodes:,} values (at {shown(path)}); not one of ours"
            )
        if not isinstance(node, (dict, list, tuple)):
            continue
        if depth >= max_depth:
            raise StoredConfigLimitError(
                f"{where}: {shown(path) or 'the top'} is nested more than {max_depth} levels deep; a checkpoint "
                "written by train.py nests 7, so the file was refused"
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        else:
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(node))

"""Configs read back from a file (a checkpoint's stored run config, an export's ``config.json``): data, never code.

What a file holds is parsed as plain data into a schema we own; only then is anything built, and only from
values that schema allows. This module is the door the loaders use; the rule lives in four modules:

1. **Plain values, nothing resolved** (:mod:`~afd_lightning.store.plain`). :func:`plain` copies the stored
   config into fresh dicts, lists and scalars (OmegaConf nodes are converted with resolvers off). A string
   holding an interpolation (``${``) is refused with its key: train.py writes stored configs resolved, so a
   genuine file never holds one. The walk counts the nodes it visits (shared references count each time;
   cycles are refused), stops at :data:`MAX_NODES`, and refuses nesting deeper than :data:`MAX_DEPTH`
   before Python's recursion limit could.
2. **What each slot may name** (:mod:`~afd_lightning.store.allow`): ``model`` (the package's registered
   networks), ``dataset``, ``method``, ``attack`` / ``eval_attack``, and inside a method ``optimizer*``,
   ``scheduler``, ``discriminator``. ``trust`` (a list of packages given by the *caller*, never read from a
   file) lets the model slot name a network class of the caller's own package.
3. **Per-argument schemas** (:mod:`~afd_lightning.store.schema`): the arguments a stored config may set are
   the named parameters of the target's signature, each value checked against its resolved annotation; an
   annotation that cannot be checked is refused. ``_args_`` are bound to parameter names first.
   Arguments that name executables, downloads, checksums or paths (:func:`never_from_file`) are dropped and
   come from the caller (the user's own config) or the class's defaults.
4. **Sized, then built** (:mod:`~afd_lightning.store.build`): a network's size (tensor elements and modules)
   is a closed form of its arguments (:mod:`afd_lightning.nets.size`), refused above :data:`MAX_PARAMETERS`
   or :data:`MAX_MODULES` before any module exists; then :func:`build` calls the checked objects with the
   checked plain values (no Hydra, no OmegaConf in between): what is checked is exactly what is built.
"""

from __future__ import annotations

from collections.abc import Mapping

from afd_lightning.store.allow import (
    allowed_attack_classes,
    allowed_targets,
    normalise_trust,
    slot_targets,
    targets_for,
    trusted_network,
)
from afd_lightning.store.build import (
    MAX_MODULES,
    MAX_PARAMETERS,
    build,
    build_stored_model,
    check_size,
    check_stored_network,
    instantiate_stored,
    network_size,
)
from afd_lightning.store.plain import (
    MAX_DEPTH,
    MAX_INT,
    MAX_LIST,
    MAX_NODES,
    MAX_STRING,
    OutsideCodeError,
    StoredConfigLimitError,
    UnsafeConfigError,
    check_tree,
    plain,
)
from afd_lightning.store.schema import (
    GIVEN_BY_CODE,
    HYDRA_KEYS,
    METHOD_SUBSLOTS,
    RUN_SWITCHES,
    SLOTS,
    check_slot,
    check_stored,
    fits,
    named_parameters,
    never_from_file,
)

__all__ = [
    "GIVEN_BY_CODE",
    "HYDRA_KEYS",
    "MAX_DEPTH",
    "MAX_INT",
    "MAX_LIST",
    "MAX_MODULES",
    "MAX_NODES",
    "MAX_PARAMETERS",
    "MAX_STRING",
    "METHOD_SUBSLOTS",
    "RUN_SWITCHES",
    "SLOTS",
    "OutsideCodeError",
    "StoredConfigLimitError",
    "UnsafeConfigError",
    "allowed_attack_classes",
    "allowed_targets",
    "build",
    "build_stored_model",
    "check_size",
    "check_slot",
    "check_stored",
    "check_stored_network",
    "check_tree",
    "fits",
    "instantiate_stored",
    "method_name",
    "named_parameters",
    "network_size",
    "never_from_file",
    "normalise_trust",
    "plain",
    "slot_targets",
    "targets_for",
    "trusted_network",
]


def method_name(config: Mapping) -> str:
    """The short name of the run's method (``AFD``, ``AT``, ``NT``, ``TRADES``, ``MATCH``): its class's ``short_name``.

    A method the allow-list does not know keeps the last part of its ``_target_``.
    """
    method = config.get("method")
    target = str((method if isinstance(method, Mapping) else {}).get("_target_", "model"))
    cls = targets_for("method").get(target)
    return str(getattr(cls, "short_name", None) or target.rpartition(".")[2])

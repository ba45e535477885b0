"""Methods rebuilt from a checkpoint: ``AFD.load_from_checkpoint(path)`` (any method's, through :class:`RobustMethod`).

The networks, attacks, discriminator and optimizer factories are rebuilt from the checkpoint's stored
run config (:func:`afd_lightning.config.run_config.from_checkpoint`), then the weights are loaded. The file is
data, never code: it is read with ``weights_only=True`` (:func:`afd_lightning.store.checkpoint.load_checkpoint`)
and every ``_target_`` it names must be on the allow-list
(:func:`afd_lightning.store.stored_config.instantiate_stored`).
"""

from __future__ import annotations

from collections.abc import Mapping

from afd_lightning.config import run_config
from afd_lightning.errors import CheckpointError
from afd_lightning.store.stored_config import (
    allowed_targets,
    build_stored_model,
    check_stored,
    instantiate_stored,
    plain,
)

# The parts of a stored run config that rebuild a method; the rest (trainer, loggers, callbacks, paths)
# describes how the run was run and is never built from a file.
BUILT_FROM_CONFIG = ("model", "attack", "eval_attack", "method")


def load_method(cls, checkpoint_path, map_location=None, strict: bool | None = None, trust=(), **overrides):
    """``cls.load_from_checkpoint``: rebuild the method from the checkpoint's stored config, load its weights.

    ``overrides`` replace built arguments of the method (e.g. ``eval_attack=None``); ``map_location``
    defaults to the CPU. ``trust``: module prefixes of your own package whose networks the stored
    model config may name (from you, never from the file; see :mod:`afd_lightning.store.stored_config`).
    """
    from afd_lightning.store.checkpoint import load_checkpoint

    where = f"checkpoint {checkpoint_path}"
    checkpoint = load_checkpoint(checkpoint_path, map_location or "cpu")
    config = plain(run_config.from_checkpoint(checkpoint, checkpoint_path), where)  # no interpolation, bounded
    missing = [key for key in ("model", "method") if not isinstance(config.get(key), Mapping)]
    if missing:
        raise CheckpointError(f"{where} has no stored {' or '.join(missing)} config, so the method cannot be rebuilt")
    check_stored({key: config.get(key) for key in BUILT_FROM_CONFIG}, where, trust=trust)  # names the key
    target = config["method"].get("_target_")
    stored_cls = allowed_targets()[target]
    if not (isinstance(stored_cls, type) and issubclass(stored_cls, cls)):
        raise CheckpointError(
            f"{where} was written by a {stored_cls.__name__} run, not by a {cls.__name__} one: "
            f"load it with {stored_cls.__name__}.load_from_checkpoint (or RobustMethod.load_from_checkpoint)"
        )
    built = {
        "model": build_stored_model(config["model"], where, trust=trust),
        "attack": instantiate_stored(config["attack"], where, "attack") if config.get("attack") else None,
        "eval_attack": (
            instantiate_stored(config["eval_attack"], where, "eval_attack") if config.get("eval_attack") else None
        ),
    }
    method = instantiate_stored(config["method"], where, "method", **{**built, **overrides})
    method.save_hyperparameters(config)
    method.on_load_checkpoint(checkpoint)
    method.load_state_dict(checkpoint["state_dict"], strict=True if strict is None else strict)
    return method

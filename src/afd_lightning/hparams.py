"""The run's resolved config as the method's Lightning hyperparameters, and methods rebuilt from it.

``train.py`` records the whole resolved run config with ``save_hyperparameters``. Lightning then hands
it to every logger when fitting starts (the W&B run config, the CSV logger's ``hparams.yaml``) and
stores it in every checkpoint under ``hyper_parameters``, laid out as the Hydra config is
(``method.optimizer_enc.lr``, ``dataset.meta.eps``, ...).

``AFD.load_from_checkpoint(path)`` (any method's, through :class:`RobustMethod`) rebuilds the
networks, attacks, discriminator and optimizer factories from that stored config and loads the
weights. The file is data, never code: it is read with ``weights_only=True``
(:func:`afd_lightning.checkpoints.load_checkpoint`) and every ``_target_`` it names must be on the
allow-list (:func:`afd_lightning.stored_config.instantiate_stored`).
"""

from __future__ import annotations

from collections.abc import Mapping

from afd_lightning.stored_config import allowed_targets, check_stored, instantiate_stored

# The parts of a stored run config that rebuild a method; the rest (trainer, loggers, callbacks, paths)
# describes how the run was run and is never built from a file.
BUILT_FROM_CONFIG = ("model", "attack", "eval_attack", "method")


def record_run_config(method, cfg) -> dict:
    """Make the resolved ``cfg`` the method's hyperparameters (loggers and checkpoints get it from there)."""
    from omegaconf import DictConfig, OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    method.save_hyperparameters(config)
    return config


def stored_config(checkpoint: dict, path) -> dict:
    """The run config of a checkpoint: its Lightning hyperparameters (older files: our own copy)."""
    from afd_lightning.checkpoints import run_config

    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, Mapping) and "method" in hparams:
        return dict(hparams)
    return run_config(checkpoint, path)


def load_method(cls, checkpoint_path, map_location=None, strict: bool | None = None, **overrides):
    """``cls.load_from_checkpoint``: rebuild the method from the checkpoint's stored config, load its weights.

    ``overrides`` replace built arguments of the method (e.g. ``eval_attack=None``); ``map_location``
    defaults to the CPU.
    """
    from afd_lightning.checkpoints import CheckpointError, load_checkpoint
    from afd_lightning.nets.build import build_model

    where = f"checkpoint {checkpoint_path}"
    checkpoint = load_checkpoint(checkpoint_path, map_location or "cpu")
    config = stored_config(checkpoint, checkpoint_path)
    missing = [key for key in ("model", "method") if not isinstance(config.get(key), Mapping)]
    if missing:
        raise CheckpointError(f"{where} has no stored {' or '.join(missing)} config, so the method cannot be rebuilt")
    check_stored({key: config.get(key) for key in BUILT_FROM_CONFIG}, where)  # errors name e.g. method._target_
    target = config["method"].get("_target_")
    stored_cls = allowed_targets()[target]
    if not (isinstance(stored_cls, type) and issubclass(stored_cls, cls)):
        raise CheckpointError(
            f"{where} was written by a {stored_cls.__name__} run, not by a {cls.__name__} one: "
            f"load it with {stored_cls.__name__}.load_from_checkpoint (or RobustMethod.load_from_checkpoint)"
        )
    built = {
        "model": build_model({**config["model"], "compile": False}),
        "attack": instantiate_stored(config["attack"], where) if config.get("attack") else None,
        "eval_attack": instantiate_stored(config["eval_attack"], where) if config.get("eval_attack") else None,
    }
    method = instantiate_stored(config["method"], where, **{**built, **overrides})
    method.save_hyperparameters(config)
    method.on_load_checkpoint(checkpoint)
    method.load_state_dict(checkpoint["state_dict"], strict=True if strict is None else strict)
    return method

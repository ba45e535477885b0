"""The run config, with one owner: how it is recorded, read back, and which of its keys are the recipe.

**Recorded once.** ``train.py`` makes the whole resolved run config the method's Lightning
hyperparameters (:func:`record`). Lightning hands it to every logger when fitting starts (the W&B run
config, the CSV logger's ``hparams.yaml``) and stores it in every checkpoint under
``hyper_parameters``, laid out as the Hydra config is (``method.optimizer_enc.lr``,
``dataset.meta.eps``, ...). That is the only copy.

**Read back** by :func:`from_checkpoint`. Files written before this module existed also carry a
second copy under ``checkpoint["afd_lightning"]["config"]``; it is read when ``hyper_parameters``
holds no run config. Configs stored before ``dataset.meta.family`` existed get it from the shipped
dataset config of the same name, so old checkpoints evaluate and resume as before.

**The recipe rule** (the only place it is written):

* :data:`RECIPE_KEYS`: the sections that decide what a run learns; a resume must share them with
  its checkpoint (:func:`recipe_differences`).
* :data:`RUNTIME_KEYS`: keys that say how a run runs, not what it learns: free on resume, ignored
  when ``afd-summarize`` groups runs into recipes (:func:`is_recipe_override`), ignored when an
  expected network is compared with a stored one.
* :func:`split_identity`: what decides which images form the test split, so that models evaluated
  side by side share one test set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from afd_lightning.config.keys import (
    NOT_RECIPE_OVERRIDES,
    RECIPE_KEYS,
    RESUME_FREE_KEYS,
    SPLIT_FREE_KEYS,
    SPLIT_META,
    runtime_keys,
)
from afd_lightning.errors import CheckpointError


# ------------------------------------------------------------------------------------ record and read
def record(method, cfg) -> dict:
    """Make the resolved ``cfg`` the method's hyperparameters (loggers and checkpoints get it from there)."""
    from omegaconf import DictConfig, OmegaConf

    config = cast(dict, OmegaConf.to_container(cfg, resolve=True)) if isinstance(cfg, DictConfig) else dict(cfg)
    method.save_hyperparameters(config)
    return config


def from_checkpoint(checkpoint: Mapping, path: Any = "checkpoint") -> dict:
    """The run config of a loaded checkpoint: ``hyper_parameters`` (older files: their ``afd_lightning`` copy)."""
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, Mapping) and isinstance(hparams.get("method"), Mapping):
        config = dict(hparams)
    else:
        meta = checkpoint.get("afd_lightning")
        if not isinstance(meta, Mapping) or not isinstance(meta.get("config"), Mapping):
            raise CheckpointError(f"{path} was not written by afd-lightning's train.py (no stored run config)")
        config = dict(meta["config"])
    return with_dataset_family(config)


def with_dataset_family(config: dict) -> dict:
    """``config`` with ``dataset.meta.family`` filled in from the shipped dataset config (stored before it existed).

    A dataset the package does not ship keeps no family (the evaluation then asks for ``family=``).
    """
    dataset = config.get("dataset")
    if not isinstance(dataset, Mapping):
        return config
    meta = dataset.get("meta")
    if not isinstance(meta, Mapping) or "family" in meta:
        return config
    family = shipped_family(str(meta.get("name")))
    if family is None:
        return config
    return {**config, "dataset": {**dataset, "meta": {**meta, "family": family}}}


def shipped_family(name: str) -> str | None:
    """``meta.family`` of the shipped ``conf/train/dataset/<name>.yaml``, or None when there is no such file."""
    from omegaconf import OmegaConf

    from afd_lightning.config.paths import config_dir

    path = config_dir("train") / "dataset" / f"{name}.yaml"
    if not name.isidentifier() or not path.is_file():
        return None
    family = OmegaConf.select(OmegaConf.load(path), "meta.family", default=None)
    return None if family is None else str(family)


# ------------------------------------------------------------------------------------- the recipe rule
def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, Mapping):
        out: dict = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def current_recipe(cfg) -> dict:
    """The :data:`RECIPE_KEYS` sections of a composed config, resolved to plain containers."""
    from omegaconf import OmegaConf

    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in RECIPE_KEYS if cfg.get(k) is not None}


# Recipe keys added after checkpoints were written, with the value that reproduces what a run did before the key
# existed: a stored config without the key compares equal to a current one holding this value (and only this one).
# attack.warmup_epochs (the training attack from the first epoch): absent from every config written at or before
# main a893f0c, the last commit without it, where each attack/*.yaml of today differs from then by this key alone.
ABSENT_MEANS: dict[str, Any] = {"attack.warmup_epochs": 0}


def recipe_differences(stored: Mapping, current: Mapping) -> list[str]:
    """``key: stored X, now Y`` for every recipe key (:data:`RECIPE_KEYS`, less :data:`RESUME_FREE_KEYS`) that differs.

    A key of :data:`ABSENT_MEANS` missing on one side stands for its old-behaviour value there.
    """
    absent = "<absent>"
    lines = []
    for section in RECIPE_KEYS:
        a = _flatten(stored.get(section) or {}, section)
        b = _flatten(current.get(section) or {}, section)
        for key in sorted(set(a) | set(b)):
            if key.startswith(RESUME_FREE_KEYS):
                continue
            old, new = a.get(key, ABSENT_MEANS.get(key, absent)), b.get(key, ABSENT_MEANS.get(key, absent))
            if old != new:
                lines.append(f"{key}: stored {a.get(key, absent)!r}, now {b.get(key, absent)!r}")
    return lines


def split_identity(dataset_cfg: Mapping) -> dict:
    """What decides the test images: the data module and its split, not how they load or how a model trained."""
    identity = {k: v for k, v in dataset_cfg.items() if k != "meta" and not f"dataset.{k}".startswith(SPLIT_FREE_KEYS)}
    meta = dataset_cfg.get("meta") or {}
    identity["meta"] = {k: meta.get(k) for k in SPLIT_META}
    return identity


def is_recipe_override(override: str) -> bool:
    """Whether a command-line override (``key=value``, ``+key=...``, ``~key``) makes another recipe."""
    key = override.lstrip("+~").partition("=")[0]
    return not key.startswith(NOT_RECIPE_OVERRIDES)


def model_differences(stored: Mapping, expected: Mapping) -> dict[str, tuple]:
    """``{key: (stored, expected)}`` for the entries of an expected model config that the stored one does not share."""
    free = runtime_keys("model")
    return {k: (stored.get(k), v) for k, v in expected.items() if k not in free and stored.get(k) != v}

"""Loading what an evaluation needs: checkpoints (with clear errors), the seeded test subset, the attacks.

Stored configs (a checkpoint's dataset) go only through :func:`afd_lightning.store.stored_config.instantiate_stored`;
the user's attack configs through :func:`afd_lightning.run.instantiation.instantiate`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
from pathlib import Path
from typing import cast

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, InterpolationResolutionError

from afd_lightning.config import run_config
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.labels import distinct_labels
from afd_lightning.run.instantiation import instantiate
from afd_lightning.store import stored_config
from afd_lightning.store.checkpoint import classifier_from, load_checkpoint, refuse_directory
from afd_lightning.store.stored_config import instantiate_stored

log = logging.getLogger(__name__)

DEFAULT_MAX_SAMPLES = 1000


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("afd-lightning", "advertorch", "foolbox", "pyautoattack", "numpy", "hydra-core"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return list(value)
    return [value]


class LoadedModel:
    """One checkpoint, read and CRC-verified once: its stored run config, its network (eval mode), its label."""

    def __init__(self, path: str, trust=()):
        self.path = path
        checkpoint = load_checkpoint(refuse_directory(path, f"ckpt_path={path}"))
        self.config = run_config.from_checkpoint(checkpoint, path)
        self.model = classifier_from(checkpoint, path, trust=trust)  # trust: from the user's config, never the file
        self.method = str(self.config.get("method", {}).get("_target_", "model")).rpartition(".")[2]  # class name
        self.name = stored_config.method_name(self.config)  # its short_name: AFD, AT, NT, TRADES, MATCH


def load_models(cfg: DictConfig) -> tuple[dict[str, LoadedModel], LoadedModel | None]:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError("ckpt_path is required: python eval.py ckpt_path=<run dir>/checkpoints/last.ckpt")
    paths = [str(p) for p in _as_list(cfg.ckpt_path)]
    if not paths:
        raise ConfigError(
            "ckpt_path is empty: pass a checkpoint, e.g. ckpt_path=logs/digits/afd/<date>/checkpoints/last.ckpt"
        )
    names = [str(n) for n in _as_list(cfg.get("names"))]
    if names and len(names) != len(paths):
        raise ConfigError(
            f"names has {len(names)} entries but ckpt_path has {len(paths)}; give one name per checkpoint"
        )
    trust = [str(t) for t in _as_list(cfg.get("trust"))]
    loaded = [LoadedModel(p, trust) for p in paths]
    # labelled by what differs between them (seed, recipe keys, run directory), not AT and AT-2
    labels = names or distinct_labels([lm.name for lm in loaded], [lm.config for lm in loaded], paths)
    if len(set(labels)) != len(labels):
        raise ConfigError(f"names={labels} repeats a name; give each checkpoint its own")
    out: dict[str, LoadedModel] = dict(zip(labels, loaded))
    first = loaded[0]
    for lm in loaded[1:]:
        if run_config.split_identity(lm.config["dataset"]) != run_config.split_identity(first.config["dataset"]):
            raise ConfigError(
                f"{lm.path} was trained on dataset {lm.config['dataset'].get('meta', {}).get('name')!r} "
                f"(or another split) but {first.path} on {first.config['dataset'].get('meta', {}).get('name')!r}; "
                "models evaluated side by side must share one test set"
            )
    source = LoadedModel(str(cfg.source_ckpt), trust) if cfg.get("source_ckpt") else None
    if source is not None:
        src_meta, meta = source.config["dataset"].get("meta", {}), first.config["dataset"].get("meta", {})
        for key in ("num_classes", "channels", "image_size"):
            if src_meta.get(key) != meta.get(key):
                raise ConfigError(
                    f"source_ckpt={source.path} has {key}={src_meta.get(key)} but the evaluated models have "
                    f"{key}={meta.get(key)}: a transfer source must be trained on the same kind of images and classes"
                )
    return out, source


def load_samples(dataset_cfg: dict, cfg: DictConfig):
    """The datamodule of the training run, its test split, and the seeded subset (x, y, indices)."""
    # Paths, downloads and executables never come from the file: the user's data_dir or the default.
    data_dir = cfg.get("data_dir") if cfg.get("data_dir") is not None else os.environ.get("AFD_DATA_DIR")
    user = {"data_dir": str(data_dir)} if data_dir else {}
    datamodule = instantiate_stored(dataset_cfg, "the checkpoint's stored run config", prefix="dataset", user=user)
    datamodule.setup("test")
    test_set = datamodule.test_set
    total = len(test_set)
    n = cfg.get("n_samples", "auto")
    if n == "auto" and cfg.get("attack") is None and "n_samples" in (cfg.get("suite") or {}):
        n = cfg.suite.n_samples  # the suite's own choice (paper_exact: the whole test set)
    if n in (None, "null", "all"):
        n = total
    elif n == "auto":
        n = min(DEFAULT_MAX_SAMPLES, total)
    else:
        try:
            n = int(n)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"n_samples={n!r} must be a positive integer, auto or null (the whole test set)") from err
        if n < 1:
            raise ConfigError(f"n_samples={n} must be >= 1 (or null for the whole test set)")
        if n > total:
            raise ConfigError(
                f"n_samples={n} is larger than the test set ({total} images); use n_samples<={total} "
                "or n_samples=null for all of it"
            )
    generator = torch.Generator().manual_seed(int(cfg.seed))
    idx = torch.randperm(total, generator=generator)[:n]
    xs, ys = zip(*(test_set[int(i)] for i in idx))
    return datamodule, torch.stack(xs).float(), torch.as_tensor(ys, dtype=torch.long), idx, total


def build_attacks(cfg: DictConfig, log_dir: Path | None = None) -> tuple[list, list[str]]:
    if cfg.get("attack") is not None:
        nodes = {"attack": cfg.attack}
        transfer = [str(cfg.attack.get("name"))] if cfg.get("source_ckpt") else []
    else:
        nodes = dict(cfg.suite.attacks.items())
        transfer = [str(t) for t in cfg.suite.get("transfer") or []]
    attacks = []
    for key, node in nodes.items():
        try:
            spec = cast(dict, OmegaConf.to_container(node, resolve=True))
        except (InterpolationKeyError, InterpolationResolutionError) as err:
            raise ConfigError(
                f"attack {key}: no settings for dataset family {cfg.family!r} ({str(err).splitlines()[0]}); "
                f"give them explicitly, e.g. {'attack' if key == 'attack' else 'suite.attacks.' + key}.eps=[0,0.1,0.2]"
            ) from err
        spec.pop("by_family", None)
        # null means "the class's default" (how a suite drops a setting of the attack it overrides),
        # except n_samples, where null means every sample.
        spec = {k: v for k, v in spec.items() if v is not None or k == "n_samples"}
        if log_dir is not None and spec.get("_target_", "").endswith("AutoAttackSweep"):
            spec.setdefault("log_dir", str(log_dir))
        attacks.append(instantiate(spec))
    if cfg.get("attack") is not None and transfer and attacks[0].kind != "norm_ball":
        transfer = []
    return attacks, transfer


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a device (auto, cpu, cuda, cuda:1...)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is available; use device=cpu or device=auto")
    return device

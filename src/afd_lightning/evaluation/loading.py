"""Loading what an evaluation needs: checkpoints and export folders (with clear errors), the seeded test subset,
the attacks.

Stored configs (a checkpoint's or an export's dataset, method and network) go only through
:mod:`afd_lightning.store.stored_config`: their slots are checked against the schema when the model is loaded,
before any name from the file reaches a report; the user's attack configs go through
:func:`afd_lightning.run.instantiation.instantiate`.

The test set is the checkpoints' own: ``dataset=`` names it only to check it (``dataset=digits`` on a digits
checkpoint passes; another name is refused, naming both), unless ``cross_dataset=true`` asks for a deliberate
evaluation on another shipped dataset's test split (:func:`evaluation_dataset`).
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
from torch import nn

from afd_lightning.config import run_config
from afd_lightning.errors import CheckpointError, ConfigError
from afd_lightning.evaluation.labels import distinct_labels
from afd_lightning.files.escape import one_line
from afd_lightning.run.instantiation import instantiate
from afd_lightning.store import stored_config
from afd_lightning.store.checkpoint import classifier_from, load_checkpoint, refuse_directory
from afd_lightning.store.export import ExportError, is_export, load_export
from afd_lightning.store.stored_config import build_stored_model, check_stored, instantiate_stored

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


MAX_LABEL = 120  # characters of a model's label in tables, figures and results.json


class LoadedModel:
    """One checkpoint (read and CRC-verified once) or ``afd-export`` folder (JSON and safetensors, read once): its
    stored run config, its network (eval mode), its method and label.

    The stored dataset and method blocks are checked against the schema here, as the loaders check them
    (:func:`afd_lightning.store.stored_config.check_stored`), so a crafted ``method._target_`` is refused before its
    name reaches a table. ``trust`` comes from the user's config, never from the file.
    """

    def __init__(self, path: str, trust=()):
        self.path = path
        where = f"ckpt_path={path}"
        if Path(path).is_dir() and not is_export(path) and not _checkpoints_in(Path(path)):
            raise CheckpointError(
                f"{where} is a folder with neither a checkpoint (*.ckpt, checkpoints/*.ckpt) nor the config.json of "
                "an afd-export folder; pass a .ckpt file (e.g. <run dir>/checkpoints/last.ckpt) or an afd-export folder"
            )
        if is_export(path):
            self.config, self.model = _read_export(path, trust)
        else:
            checkpoint = load_checkpoint(refuse_directory(path, where))
            self.config = run_config.from_checkpoint(checkpoint, path)
            self.model = classifier_from(checkpoint, path, trust=trust)
        for slot in ("dataset", "method"):
            if not isinstance(self.config.get(slot), dict):
                raise stored_config.UnsafeConfigError(f"{where}: the stored config has no {slot} block")
            check_stored(self.config[slot], where, prefix=slot)
        target = self.config["method"]["_target_"]  # checked: a method class of the allow-list
        self.method = str(target).rpartition(".")[2]  # its class name
        self.name = stored_config.method_name(self.config)  # its short_name: AFD, AT, NT, TRADES, MATCH


def _checkpoints_in(folder: Path) -> bool:
    return any(folder.glob("*.ckpt")) or any(folder.glob("checkpoints/*.ckpt"))


def _read_export(folder: str, trust=()) -> tuple[dict, nn.Module]:
    """(run config, network) of an ``afd-export`` folder; ``config.json`` is read once and used for both.

    The network is built from this read of ``config.json`` (checked, sized before it is built) and
    :func:`afd_lightning.store.export.load_export` loads the weights into it, with its checks of the folder's
    files, format and tensors.
    """
    from afd_lightning.files.reader import read_json
    from afd_lightning.store.export import CONFIG, FORMAT, FORMAT_VERSION, MAX_CONFIG_BYTES

    where = f"ckpt_path={folder} (an afd-export folder)"
    config = read_json(Path(folder) / CONFIG, max_bytes=MAX_CONFIG_BYTES, what=f"{where}:")
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{where}: config.json is not an afd-export config of format version {FORMAT_VERSION}")
    recipe = config.get("recipe")
    dataset = recipe.get("dataset") if isinstance(recipe, dict) else None
    if not isinstance(recipe, dict) or not isinstance(dataset, dict):
        raise ExportError(f"{where}: config.json has no recipe with a dataset block, so its test set is unknown")
    model = build_stored_model(config.get("model"), where, trust=trust)
    model = load_export(folder, trust=trust, model=model)
    run = {
        "model": config.get("model"),
        "dataset": {k: v for k, v in dataset.items() if k != "name"},  # name: the export's copy of meta.name
        "method": recipe.get("method_config"),
        "attack": recipe.get("attack"),
        "seed": recipe.get("seed"),
        "trainer": {"max_epochs": recipe.get("max_epochs"), "precision": recipe.get("precision")},
    }
    return run_config.with_dataset_family(run), model


def shipped_dataset(name: str) -> dict:
    """The dataset config ``conf/train/dataset/<name>.yaml`` as plain values (``data_dir`` is the caller's)."""
    from omegaconf import OmegaConf

    from afd_lightning.config.paths import config_dir
    from afd_lightning.config.suggest import did_you_mean

    folder = config_dir("train") / "dataset"
    options = sorted(p.stem for p in folder.glob("*.yaml"))
    if name not in options:
        raise ConfigError(f"{did_you_mean(f'dataset={name}', name, options)} (shipped datasets: {', '.join(options)})")
    node = OmegaConf.load(folder / f"{name}.yaml")
    plain = {k: v for k, v in cast(dict, OmegaConf.to_container(node)).items() if k not in ("defaults", "data_dir")}
    return cast(dict, OmegaConf.to_container(OmegaConf.create(plain), resolve=True))


def dataset_name(dataset_cfg) -> str | None:
    meta = dataset_cfg.get("meta") if isinstance(dataset_cfg, dict) else None
    return meta.get("name") if isinstance(meta, dict) else None


def evaluation_dataset(cfg: DictConfig, first: LoadedModel) -> dict:
    """The dataset config the evaluation runs on: the checkpoints' own, or ``dataset=`` with ``cross_dataset=true``.

    ``dataset=`` that names another dataset than the checkpoint's is refused, naming both: the test set, its
    threat model and ε tables all come from the checkpoint, and ``results.json`` holds one dataset only.
    """
    trained = first.config["dataset"]
    wanted, name = cfg.get("dataset"), dataset_name(trained)
    if wanted is None or str(wanted) == name:
        return trained
    if not cfg.get("cross_dataset", False):
        raise ConfigError(
            f"dataset={one_line(wanted, 80)} but {first.path} was trained on {name!r}: an evaluation runs on its "
            f"checkpoint's test set (drop dataset=), or pass cross_dataset=true to evaluate on {one_line(wanted, 80)}'s "
            "test set deliberately"
        )
    chosen = shipped_dataset(str(wanted))
    log.warning("cross_dataset=true: %s (trained on %s) is evaluated on %s's test set", first.path, name, wanted)
    return chosen


def load_models(cfg: DictConfig) -> tuple[dict[str, LoadedModel], LoadedModel | None]:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError(
            "ckpt_path is required: afd-eval ckpt_path=<run dir>/checkpoints/last.ckpt (or an afd-export folder)"
        )
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
    labels = names or [
        one_line(label, MAX_LABEL)  # recipe values and run folder names come from the files: one line, capped
        for label in distinct_labels([lm.name for lm in loaded], [lm.config for lm in loaded], paths)
    ]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"names={labels} repeats a name; give each checkpoint its own")
    out: dict[str, LoadedModel] = dict(zip(labels, loaded))
    first = loaded[0]
    for lm in loaded[1:]:
        if run_config.split_identity(lm.config["dataset"]) != run_config.split_identity(first.config["dataset"]):
            raise ConfigError(
                f"{lm.path} was trained on dataset {one_line(dataset_name(lm.config['dataset']), 80)!r} "
                f"(or another split) but {first.path} on {one_line(dataset_name(first.config['dataset']), 80)!r}; "
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

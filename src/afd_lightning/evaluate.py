"""The evaluation entry point: ``afd_lightning.evaluate.run(cfg)``; ``main`` is the Hydra CLI (eval.py, afd-eval).

One command evaluates one or several checkpoints with the paper's attack suite on a seeded
subset of their test split, and writes results.json, tables in the paper's formats, figures and
the honesty checks into the run directory (afd_lightning/evaluation/conf/eval.yaml documents every option).
"""
from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationKeyError, InterpolationResolutionError

import afd_lightning  # noqa: F401  (registers the config resolvers)
from afd_lightning.checkpoints import CheckpointError, load_checkpoint, run_config
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation import report
from afd_lightning.evaluation.sweep import SWEEP_MODES
from afd_lightning.runtime import EVAL_CONFIG_PATH, check_model_fits, instantiate, instantiate_stored, run_cli, set_threads

log = logging.getLogger(__name__)

FAMILIES = {"digits": "digits", "mnist": "mnist", "cifar10": "cifar", "cifar100": "cifar"}
METHOD_NAMES = {"AFD": "AFD", "AdversarialTraining": "AT", "NaturalTraining": "NT", "TRADES": "TRADES",
                "EmbeddingMatching": "MATCH"}
# Dataset settings that do not change which images form the test split.
_LOADING_KEYS = {"data_dir", "download", "batch_size", "eval_batch_size", "num_workers", "pin_memory", "augment"}
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


def _split_identity(dataset_cfg: dict) -> dict:
    return {k: v for k, v in dataset_cfg.items() if k not in _LOADING_KEYS}


class LoadedModel:
    def __init__(self, path: str):
        from afd_lightning.checkpoints import load_classifier

        self.path = path
        self.config = run_config(load_checkpoint(path), path)
        self.model = load_classifier(path)
        method = str(self.config.get("method", {}).get("_target_", "model")).rpartition(".")[2]
        self.name = METHOD_NAMES.get(method, method)


def load_models(cfg: DictConfig) -> tuple[dict[str, LoadedModel], LoadedModel | None]:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError("ckpt_path is required: python eval.py ckpt_path=<run dir>/checkpoints/last.ckpt")
    paths = [str(p) for p in _as_list(cfg.ckpt_path)]
    if not paths:
        raise ConfigError("ckpt_path is empty: pass a checkpoint, e.g. ckpt_path=logs/digits/afd/<date>/checkpoints/last.ckpt")
    names = [str(n) for n in _as_list(cfg.get("names"))]
    if names and len(names) != len(paths):
        raise ConfigError(f"names has {len(names)} entries but ckpt_path has {len(paths)}; give one name per checkpoint")
    loaded = [LoadedModel(p) for p in paths]
    out: dict[str, LoadedModel] = {}
    for i, lm in enumerate(loaded):
        name = names[i] if names else lm.name
        if name in out:
            name = f"{name}-{i + 1}"
        out[name] = lm
    first = loaded[0]
    for lm in loaded[1:]:
        if _split_identity(lm.config["dataset"]) != _split_identity(first.config["dataset"]):
            raise ConfigError(
                f"{lm.path} was trained on dataset {lm.config['dataset'].get('meta', {}).get('name')!r} "
                f"(or another split) but {first.path} on {first.config['dataset'].get('meta', {}).get('name')!r}; "
                "models evaluated side by side must share one test set"
            )
    source = LoadedModel(str(cfg.source_ckpt)) if cfg.get("source_ckpt") else None
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
    dataset_cfg = dict(dataset_cfg)
    if cfg.get("data_dir") is not None and "data_dir" in dataset_cfg:
        dataset_cfg["data_dir"] = str(cfg.data_dir)
    datamodule = instantiate_stored(dataset_cfg, "the checkpoint's stored run config", prefix="dataset")
    datamodule.setup("test")
    test_set = datamodule.test_set
    total = len(test_set)
    n = cfg.get("n_samples", "auto")
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


def build_attacks(cfg: DictConfig) -> tuple[list, list[str]]:
    if cfg.get("attack") is not None:
        nodes = {"attack": cfg.attack}
        transfer = [str(cfg.attack.get("name"))] if cfg.get("source_ckpt") else []
    else:
        nodes = dict(cfg.suite.attacks.items())
        transfer = [str(t) for t in cfg.suite.get("transfer") or []]
    attacks = []
    for key, node in nodes.items():
        try:
            spec = OmegaConf.to_container(node, resolve=True)
        except (InterpolationKeyError, InterpolationResolutionError) as err:
            raise ConfigError(
                f"attack {key}: no settings for dataset family {cfg.family!r} ({str(err).splitlines()[0]}); "
                f"give them explicitly, e.g. {'attack' if key == 'attack' else 'suite.attacks.' + key}.eps=[0,0.1,0.2]"
            ) from err
        spec.pop("by_family", None)
        attacks.append(instantiate(spec))
    if cfg.get("attack") is not None and transfer and attacks[0].kind not in ("norm_ball",):
        transfer = []
    return attacks, transfer


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a device (auto, cpu, cuda, cuda:1...)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is available; use device=cpu or device=auto")
    return device


def run(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt_path`` (one or several checkpoints); returns the results dict also written to results.json."""
    set_threads(cfg.get("threads", "auto"))  # first: the CPU threads every later step runs with
    from afd_lightning.evaluation.suite import evaluate_models

    start = time.perf_counter()
    if cfg.get("logger") not in (None, "none", "wandb"):
        raise ConfigError(f"logger={cfg.logger!r}: eval.py logs to 'wandb' or to nothing (null)")
    if cfg.get("sweep_mode", "survivors") not in SWEEP_MODES:
        raise ConfigError(f"sweep_mode={cfg.sweep_mode!r} must be one of {', '.join(SWEEP_MODES)}")
    out_dir = Path(str(cfg.output_dir))
    report.start(out_dir)
    try:
        loaded, source = load_models(cfg)
        first = next(iter(loaded.values()))
        dataset_cfg = first.config["dataset"]
        meta = dataset_cfg.get("meta", {})
        datamodule, x, y, idx, total = load_samples(dataset_cfg, cfg)
        for lm in [*loaded.values(), *([source] if source else [])]:
            try:
                check_model_fits(lm.model, datamodule)
            except ConfigError as err:
                raise CheckpointError(f"{lm.path}: {err}") from None
        family = cfg.get("family", "auto")
        if family == "auto":
            family = FAMILIES.get(meta.get("name"))
            if family is None:
                raise ConfigError(
                    f"no attack eps tables for dataset {meta.get('name')!r}; pass family=digits|mnist|cifar "
                    "(whose eps lists fit your images best)"
                )
        table_eps = float(meta["eps"]) if cfg.get("table_eps", "auto") == "auto" else float(cfg.table_eps)
        with open_dict(cfg):
            cfg.family = family
        attacks, transfer = build_attacks(cfg)
        device = _device(str(cfg.get("device", "auto")))

        def header() -> dict:
            return {
                "checkpoints": {name: lm.path for name, lm in loaded.items()},
                "source": source.path if source else None,
                "dataset": meta.get("name"), "family": family, "table_eps": table_eps,
                "n_samples": len(y), "test_set_size": total, "seed": int(cfg.seed),
                "sample_indices": idx.tolist(), "sweep_mode": cfg.sweep_mode, "device": str(device),
                "attacks": [a.describe() for a in attacks],
            }

        def partial(results) -> None:
            report.write_json(out_dir / report.PARTIAL, {
                "complete": False, **header(), "models": {k: r.to_json() for k, r in results.items()}})

        results = evaluate_models(
            {name: lm.model for name, lm in loaded.items()}, x, y, attacks,
            source=source.model if source else None, transfer=transfer, table_eps=table_eps,
            sweep_mode=cfg.sweep_mode, batch_size=int(cfg.batch_size), seed=int(cfg.seed), device=device,
            progress=bool(cfg.get("progress", True)), analyses=bool(cfg.get("analyses", True)),
            num_classes=meta.get("num_classes"), checks=cfg.get("checks"), on_attack_done=partial,
        )
        attack_list = [a.describe() for a in attacks]
        for tr in [n + "_bb" for n in transfer]:
            any_model = next(iter(results.values()))
            if tr in any_model.curves:
                c = any_model.curves[tr]
                attack_list.append({"name": tr, "kind": "transfer", "norm": c.norm, "label": c.info.get("label", tr),
                                    "eps": c.eps, "auc_table": False})
        models_json = {}
        for name, res in results.items():
            entry = {"checkpoint": loaded[name].path, **res.to_json()}
            if "boundary" in res.curves and res.curves["boundary"].min_norms is not None:
                from afd_lightning.evaluation.tables import BOUNDARY_EPS

                entry["attacks"]["boundary"]["accuracy_at_table_a4"] = res.curves["boundary"].accuracy_at(BOUNDARY_EPS)
            models_json[name] = entry
        results_json = {
            "complete": True,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **header(), "attacks": attack_list, "models": models_json,
            "config": OmegaConf.to_container(cfg, resolve=True), "versions": versions(),
            "seconds": round(time.perf_counter() - start, 2),
        }
        summary = report.finish(out_dir, results_json, make_plots=bool(cfg.get("plots", True)))
        results_json["summary"] = summary
        if cfg.get("logger") == "wandb":
            from afd_lightning.evaluation.wandb_log import log_evaluation

            log_evaluation(out_dir, results_json, **(cfg.get("wandb") or {}))

        failed = [f"{m}: {c['name']}" for m, r in models_json.items() for c in r["checks"] if c["passed"] is False]
        log.info("evaluation finished in %.0fs; results in %s%s", results_json["seconds"], out_dir / "results.json",
                 f"; FAILED checks: {', '.join(failed)}" if failed else "")
        return results_json
    except BaseException as err:
        report.fail(out_dir, err)
        raise


@hydra.main(version_base="1.3", config_path=EVAL_CONFIG_PATH, config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    results = run_cli(run, cfg)
    print("\n" + results["summary"])
    print(f"results: {Path(str(cfg.output_dir)) / 'results.json'}")


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()

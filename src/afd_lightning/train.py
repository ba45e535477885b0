"""The training entry point: ``afd_lightning.train.run(cfg)``; ``main`` is the Hydra CLI (train.py, afd-train)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import afd_lightning  # noqa: F401  (registers the config resolvers)
from afd_lightning.attacks import attack_mode
from afd_lightning.errors import AFDUserError, ConfigError
from afd_lightning.nets.build import build_model

log = logging.getLogger(__name__)

CONFIG_DIR = os.environ.get("AFD_CONFIG_DIR", str(Path(__file__).resolve().parents[2] / "conf"))
FINAL_METRICS = ("val/acc_clean", "val/acc_adv", "test/acc_clean", "test/acc_adv")


def check_model_fits(model: torch.nn.Module, datamodule) -> None:
    """A dummy forward pass: a network that cannot take the dataset's images fails here, before training."""
    shape = (2, datamodule.channels, datamodule.image_size, datamodule.image_size)
    name = type(datamodule).__name__
    try:
        with attack_mode(model), torch.no_grad():
            out = model(torch.zeros(shape))
    except RuntimeError as err:
        raise ConfigError(
            f"the model cannot take {name} images of shape {tuple(shape[1:])}: {str(err).splitlines()[0]}. "
            "Pick a model that fits (model=...)"
        ) from err
    if tuple(out.shape) != (2, datamodule.num_classes):
        raise ConfigError(
            f"the model outputs {tuple(out.shape[1:])} logits but {name} has {datamodule.num_classes} classes"
        )


def choose_strategy(trainer_cfg: DictConfig, method) -> str:
    """DDP when more than one device or node is asked for; AFD's partial losses need unused-parameter detection."""
    strategy = trainer_cfg.get("strategy", "auto")
    if strategy != "auto":
        return strategy
    devices, nodes = trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1)
    multi = nodes > 1 or (isinstance(devices, int) and (devices > 1 or devices == -1)) or (
        isinstance(devices, str) and devices not in ("1", "auto")
    ) or (not isinstance(devices, (int, str)) and len(devices) > 1)
    if not multi:
        return "auto"
    return "ddp_find_unused_parameters_true" if not method.automatic_optimization else "ddp"


def _resolve_ckpt_path(ckpt_path) -> str | None:
    if ckpt_path is None:
        return None
    path = Path(str(ckpt_path))
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; pass the path of a checkpoint to resume from")
    from afd_lightning.checkpoints import load_checkpoint

    load_checkpoint(path)  # clear error for a corrupt or unsafe file before Lightning touches it
    return str(path)


def _call(fn, *args):
    """``fn(*args)`` with Hydra's instantiation errors unwrapped to our own clear errors."""
    from hydra.errors import InstantiationException

    try:
        return fn(*args)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, AFDUserError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def _instantiate(node, **kwargs):
    return _call(lambda: instantiate(node, **kwargs))


def build(cfg: DictConfig):
    """Instantiate (datamodule, method, trainer) from a composed config."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = _instantiate(cfg.dataset)
    model = _call(build_model, cfg.model)
    check_model_fits(model, datamodule)
    attack = _instantiate(cfg.attack)
    eval_attack = _instantiate(cfg.eval_attack)
    method = _instantiate(cfg.method, model=model, attack=attack, eval_attack=eval_attack)
    method.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [_instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [_instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = _instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, strategy=choose_strategy(cfg.trainer, method)
    )
    return datamodule, method, trainer


def run(cfg: DictConfig) -> dict[str, float]:
    """Train, then test; writes checkpoints/ and metrics.json into ``cfg.paths.output_dir``."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = _resolve_ckpt_path(cfg.get("ckpt_path"))
    if cfg.get("test_ckpt", "last") not in ("best", "last"):
        raise ConfigError(f"test_ckpt={cfg.test_ckpt!r} must be 'best' or 'last'")
    datamodule, method, trainer = build(cfg)
    try:
        trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if cfg.get("test_after_fit", True):
            test_ckpt = _checkpoint_for_test(trainer, cfg.get("test_ckpt", "last"))
            results = trainer.test(method, datamodule=datamodule, ckpt_path=test_ckpt)
            metrics.update({k: float(v) for k, v in results[0].items()})
            metrics["test/checkpoint"] = test_ckpt
    finally:
        _finish_wandb(trainer)
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        summary = ", ".join(f"{k}={metrics[k]:.4f}" for k in FINAL_METRICS if k in metrics)
        log.info("finished: %s (metrics in %s)", summary, output_dir / "metrics.json")
    return metrics


def _checkpoint_for_test(trainer, which: str) -> str | None:
    """Path of best.ckpt (best monitored score) or last.ckpt (latest epoch); None: the weights in memory."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint) or not cb.best_model_path:
            continue
        if (which == "best") == (cb.monitor is not None):
            return cb.best_model_path
    return None


def _finish_wandb(trainer) -> None:
    from pytorch_lightning.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        import wandb

        wandb.finish()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        metrics = run(cfg)
    except AFDUserError as err:
        log.error("%s", err)
        raise SystemExit(f"error: {err}") from None
    return metrics.get("val/acc_adv")


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()

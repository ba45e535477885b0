"""The training entry point: ``afd_lightning.train.run(cfg)``; ``main`` is the Hydra CLI (train.py, afd-train).

Heavy modules (torch, Lightning, anything importing them) are imported inside the functions, so that
``train.py --help`` and ``--cfg job`` answer in about a second (tests/conf/test_conventions.py checks it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

import afd_lightning  # noqa: F401  (registers the config resolvers)
from afd_lightning.config.paths import TRAIN_CONFIG_PATH
from afd_lightning.errors import ConfigError
from afd_lightning.process.cli import run_cli
from afd_lightning.run.instantiation import call, check_model_fits, instantiate

log = logging.getLogger(__name__)

FINAL_METRICS = ("val/acc_clean", "val/acc_adv", "test/acc_clean", "test/acc_adv")


def choose_strategy(trainer_cfg: DictConfig, method) -> str:
    """``trainer.strategy`` for this method (:func:`afd_lightning.run.strategy.choose_strategy`, shared with the API)."""
    from afd_lightning.run.strategy import choose_strategy as rule

    return rule(
        trainer_cfg.get("devices", 1),
        trainer_cfg.get("num_nodes", 1),
        trainer_cfg.get("strategy", "auto"),
        method.automatic_optimization,
    )


def build(cfg: DictConfig):
    """Instantiate (datamodule, method, trainer) from a composed config."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from afd_lightning.callbacks import CheckpointPathGuard
    from afd_lightning.callbacks.progress import progress_callbacks
    from afd_lightning.config import run_config
    from afd_lightning.nets.build import build_model
    from afd_lightning.process.quiet import silence_known_noise

    silence_known_noise()
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.dataset)
    model = call(build_model, cfg.model)
    check_model_fits(model, datamodule)
    attack = instantiate(cfg.attack)
    eval_attack = instantiate(cfg.eval_attack)
    method = instantiate(cfg.method, model=model, attack=attack, eval_attack=eval_attack)
    run_config.record(method, cfg)  # hyperparameters: every logger and checkpoint gets the resolved config
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks.append(CheckpointPathGuard(cfg.paths.output_dir))  # always: resumed paths stay inside the run dir
    callbacks += progress_callbacks(cfg.trainer.get("enable_progress_bar", True), callbacks)
    loggers = [lg for lg in (instantiate(c) for c in (cfg.get("logger") or {}).values()) if lg is not None]
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        strategy=choose_strategy(cfg.trainer, method),
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),  # callbacks=none: no checkpoint
    )
    return datamodule, method, trainer


def run(cfg: DictConfig) -> dict[str, float | str | None]:
    """Train, then test; writes checkpoints/ and metrics.json into ``cfg.paths.output_dir``.

    The run directory is locked, checked and, on resume, matched to the checkpoint by :mod:`afd_lightning.run.rundir`.
    """
    from afd_lightning.process.threads import set_threads

    threads = set_threads(
        cfg.get("threads", "auto"), cfg.get("dataset")
    )  # first: the CPU threads every later step runs with
    from afd_lightning.callbacks.preemption import stop_if_signalled
    from afd_lightning.files.writer import write_text_atomic
    from afd_lightning.run import provenance
    from afd_lightning.run.rundir import RunDirectory

    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("test_ckpt", "last") not in ("best", "last"):
        raise ConfigError(f"test_ckpt={cfg.test_ckpt!r} must be 'best' or 'last'")
    with RunDirectory(cfg) as run_dir:
        # a resumed threads=auto run keeps its checkpoint's thread count (bit-exact continuation)
        _, setting = provenance.threads_for_resume(cfg.get("threads", "auto"), threads, run_dir.checkpoint)
        datamodule, method, trainer = build(cfg)
        method.provenance = provenance.collect(seed=cfg.seed, device=_device(trainer), threads_setting=setting)
        run_dir.prepare(trainer, method)  # Lightning reads checkpoints verified; a resume gets the verified dict
        try:
            with run_dir.exit_143_on_preemption(trainer):
                trainer.fit(method, datamodule=datamodule, ckpt_path=run_dir.ckpt_path)
                stop_if_signalled(trainer)  # a signal in the last validation: exit 143, no metrics.json
                metrics: dict[str, float | str | None] = {
                    k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
                }
                if cfg.get("test_after_fit", True):
                    test_ckpt = _checkpoint_for_test(trainer, cfg.get("test_ckpt", "last"))
                    # read once and verified in memory (CRCs, sizes, shape) by the strategy's checkpoint reader
                    results = trainer.test(method, datamodule=datamodule, ckpt_path=test_ckpt)
                    stop_if_signalled(trainer)  # Lightning's test loop ignores SIGTERM
                    metrics.update({k: float(v) for k, v in results[0].items()})
                    metrics["test/checkpoint"] = test_ckpt
        finally:
            _finish_wandb(trainer)
        if trainer.is_global_zero:
            written = {**metrics, "provenance": method.provenance.snapshot()}
            write_text_atomic(output_dir / "metrics.json", json.dumps(written, indent=2, sort_keys=True) + "\n")
            summary = ", ".join(f"{k}={metrics[k]:.4f}" for k in FINAL_METRICS if k in metrics)
            log.info("finished: %s (metrics in %s)", summary, output_dir / "metrics.json")
    return metrics


def _device(trainer) -> str:
    """The device the run computes on (``cpu``, ``cuda:0``; ``cuda:0+3 more`` under multi-device DDP)."""
    strategy = trainer.strategy
    devices = getattr(strategy, "parallel_devices", None) or []
    try:
        device = str(strategy.root_device)
    except (AttributeError, IndexError, RuntimeError):
        device = str(devices[0]) if devices else type(trainer.accelerator).__name__
    return device if len(devices) <= 1 else f"{device}+{len(devices) - 1} more"


def _checkpoint_for_test(trainer, which: str) -> str | None:
    """Path of best.ckpt (best monitored score) or last.ckpt (latest epoch); None: the weights in memory."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint) or not cb.best_model_path:
            continue
        if (which == "best") == (cb.monitor is not None):
            return cb.best_model_path
    return None


def bare_trainer(**overrides):
    """A Trainer for a method's training step alone, as benchmarks and tests drive it: one CPU device, one
    epoch, no validation, logger, checkpoint, progress bar or model summary. ``overrides`` replace any
    argument (``accelerator="gpu"``, ``precision=...``, ``callbacks=[...]``, ``limit_train_batches=...``).
    """
    import pytorch_lightning as pl

    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(**{**settings, **overrides})


def _finish_wandb(trainer) -> None:
    from afd_lightning.run.loggers import finish

    finish(trainer.loggers)


@hydra.main(version_base="1.3", config_path=TRAIN_CONFIG_PATH, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from pytorch_lightning.utilities import rank_zero_only

    from afd_lightning.config.extras import apply_extras

    # Lightning sets and documents rank_zero_only.rank, but its type (a decorator function) does not declare it.
    apply_extras(cfg, rank_zero=rank_zero_only.rank == 0)  # type: ignore[attr-defined]
    return run_cli(run, cfg).get(cfg.get("optimized_metric") or "val/acc_adv")  # what a sweeper optimizes


def main() -> None:
    from afd_lightning.config.preflight import run as preflight

    preflight("train")  # bad values and unknown keys answered before torch is imported, and no run dir made
    _hydra_main()


if __name__ == "__main__":
    main()

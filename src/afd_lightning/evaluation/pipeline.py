"""One evaluation from an eval.yaml config: load, attack, check, write (behind ``afd_lightning.evaluate.run``)."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf, open_dict

from afd_lightning.config.resolvers import cpu_cores
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation import loading
from afd_lightning.evaluation.checks.checker import settings_from_config
from afd_lightning.evaluation.parallel import count_jobs, plan_shard_size, plan_workers
from afd_lightning.evaluation.report import writer as report
from afd_lightning.evaluation.report.schema import AttackInfo, EvaluationResults
from afd_lightning.evaluation.sweep import SWEEP_MODES
from afd_lightning.files.writer import release_run_log, remove_empty_folders
from afd_lightning.run import hydra_record, provenance
from afd_lightning.run.instantiation import check_model_fits
from afd_lightning.store.checkpoint import CheckpointError

log = logging.getLogger(__name__)


def _batch_size(cfg: DictConfig) -> int:
    value = cfg.get("batch_size")
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1 or str(size) != str(value).strip():
        raise ConfigError(
            f"batch_size={value!r} must be a positive integer (images attacked at once), e.g. batch_size=500"
        )
    return size


def _from_suite(cfg: DictConfig, key: str, default):
    """``cfg[key]``, where ``auto`` means the suite's setting (if it has one) or ``default``."""
    value = cfg.get(key, "auto")
    if value == "auto":
        suite = cfg.get("suite") if cfg.get("attack") is None else None
        value = suite.get(key, default) if suite is not None else default
    return value


def validate_settings(cfg: DictConfig) -> int:
    """Check the evaluation settings of ``cfg`` (afd-eval and :func:`afd_lightning.evaluate` alike); its batch size."""
    if cfg.get("logger") not in (None, "none", "wandb"):
        raise ConfigError(f"logger={cfg.logger!r}: eval.py logs to 'wandb' or to nothing (null)")
    with open_dict(cfg):
        cfg.sweep_mode = _from_suite(cfg, "sweep_mode", "survivors")
        cfg.analyses = _from_suite(cfg, "analyses", True)
    if cfg.sweep_mode not in SWEEP_MODES:
        raise ConfigError(f"sweep_mode={cfg.sweep_mode!r} must be one of {', '.join(SWEEP_MODES)} (or auto)")
    settings_from_config(cfg.get("checks"))  # a wrong key or value is refused before anything loads
    plan_shard_size(cfg.get("shard_size", "auto"), "cpu")
    if not isinstance(cfg.analyses, bool):
        raise ConfigError(f"analyses={cfg.analyses!r} must be true, false or auto (the suite's choice)")
    return _batch_size(cfg)


def _drop_hydra_folder(out_dir: Path) -> None:
    """With ``output_dir=...`` elsewhere, Hydra's own run folder (``<run>/eval/<suite>-<date>``) stays empty: remove it
    (and an ``eval/`` it made), so an evaluation leaves one folder, with its log in it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    if hydra_dir.resolve() != out_dir.resolve():
        remove_empty_folders(hydra_dir, levels=2 if hydra_dir.parent.name == "eval" else 1)


def run(cfg: DictConfig) -> EvaluationResults:
    """Evaluate ``cfg.ckpt_path`` (one or several checkpoints); the results are also written to results.json."""
    from afd_lightning.evaluation.suite import SuiteSettings, SweepSettings, evaluate_models

    start = time.perf_counter()
    record = provenance.collect(seed=cfg.get("seed"), threads_setting=cfg.get("threads", "auto"))
    out_dir = Path(str(cfg.output_dir))
    report.start(out_dir)  # refuses a linked output (or eval/) folder before anything is written there
    hydra_record.write(out_dir, cfg)  # Hydra's own .hydra/ writing is off (conf/eval/eval.yaml): only now
    release_run_log(out_dir / "evaluate.log")  # and only now does evaluate.log get this evaluation's lines, beside them
    _drop_hydra_folder(out_dir)
    try:
        batch_size = validate_settings(cfg)
        loaded, source = loading.load_models(cfg)
        first = next(iter(loaded.values()))
        dataset_cfg = loading.evaluation_dataset(cfg, first)  # the checkpoints' own (cross_dataset=true: dataset=)
        meta = dataset_cfg.get("meta", {})
        datamodule, x, y, idx, total = loading.load_samples(dataset_cfg, cfg)
        for lm in [*loaded.values(), *([source] if source else [])]:
            try:
                check_model_fits(lm.model, datamodule)
            except ConfigError as err:
                raise CheckpointError(f"{lm.path}: {err}") from None
        family = cfg.get("family", "auto")
        if family == "auto":
            family = meta.get(
                "family"
            )  # dataset.meta.family (afd_lightning.config.run_config fills it in for old files)
            if family is None:
                raise ConfigError(
                    f"no attack eps tables for dataset {meta.get('name')!r}; pass family=digits|mnist|cifar "
                    "(whose eps lists fit your images best)"
                )
        table_eps = float(meta["eps"]) if cfg.get("table_eps", "auto") == "auto" else float(cfg.table_eps)
        with open_dict(cfg):
            cfg.family = family
        attacks, transfer = loading.build_attacks(cfg, log_dir=out_dir)
        device = loading.pick_device(str(cfg.get("device", "auto")))
        results = EvaluationResults(
            complete=False,
            dataset=meta.get("name"),
            family=family,
            table_eps=table_eps,
            n_samples=len(y),
            test_set_size=total,
            seed=int(cfg.seed),
            sweep_mode=str(cfg.sweep_mode),
            device=str(device),
            checkpoints={name: lm.path for name, lm in loaded.items()},
            source=source.path if source else None,
            sample_indices=idx.tolist(),
            attacks=[AttackInfo.from_describe(a.describe()) for a in attacks],
        )

        def records(model_results) -> None:
            results.models = {k: r.record(loaded[k].path) for k, r in model_results.items()}

        def partial(model_results) -> None:
            records(model_results)
            report.write_json(out_dir / report.PARTIAL, results.to_json())

        # the attack self-test runs on every naturally trained model among the checkpoints
        natural = [name for name, lm in loaded.items() if lm.method == "NaturalTraining"]
        models = {name: lm.model for name, lm in loaded.items()}
        analyses = bool(cfg.get("analyses", True))
        sweep = SweepSettings(
            mode=str(cfg.sweep_mode),
            batch_size=batch_size,
            seed=int(cfg.seed),
            shard_size=plan_shard_size(cfg.get("shard_size", "auto"), device.type),
        )
        # on a CPU with the cores for it, the (model, attack, shard) curves run in several processes (parallel.py)
        threads = cfg.get("threads", "auto")
        extra = (len(transfer) if source else 0) + int(analyses)
        n_jobs = count_jobs(len(models), attacks, len(y), sweep.shard_size, extra)
        workers = 1 if device.type != "cpu" else plan_workers(cfg.get("workers", "auto"), n_jobs, threads)
        settings = SuiteSettings(
            table_eps=table_eps,
            sweep=sweep,
            checks=settings_from_config(cfg.get("checks")),
            transfer=tuple(transfer),
            natural=tuple(natural),
            analyses=analyses,
            num_classes=meta.get("num_classes"),
            device=device,
            workers=workers,
            threads=max(1, cpu_cores() // workers) if threads == "auto" else int(threads),
            progress=bool(cfg.get("progress", True)),
        )
        model_results = evaluate_models(
            models, x, y, attacks, settings, source=source.model if source else None, on_attack_done=partial
        )
        records(model_results)
        known = {a.name for a in results.attacks}
        for r in model_results.values():
            for name, described in r.attacks.items():
                if name not in known:  # transfer attacks, built inside the suite
                    results.attacks.append(AttackInfo.from_describe(described))
                    known.add(name)
        results.complete = True
        results.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results.config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))  # a DictConfig: a dict
        results.versions = loading.versions()
        results.seconds = round(time.perf_counter() - start, 2)
        record.device = str(device)
        record.snapshot()  # wall time up to here
        results.provenance = record
        report.finish(out_dir, results, make_plots=bool(cfg.get("plots", True)))
        if cfg.get("logger") == "wandb":
            from afd_lightning.evaluation.report.wandb_log import log_evaluation

            log_evaluation(out_dir, results, **(cfg.get("wandb") or {}))
        failed = [f"{m}: {c.name}" for m, r in results.models.items() for c in r.failed_checks()]
        log.info(
            "evaluation finished in %.0fs; results in %s%s",
            results.seconds,
            out_dir / "results.json",
            f"; FAILED checks: {', '.join(failed)}" if failed else "",
        )
        return results
    except BaseException as err:
        report.fail(out_dir, err)
        raise

"""afd-lightning as a library: a recipe by name in one's own Lightning script, and a one-call evaluation.

* :func:`recipe` builds what ``afd-train experiment=<name>`` builds (the LightningModule, the LightningDataModule
  and the ``pl.Trainer`` arguments) from the same YAML: ``conf/train/train.yaml`` with
  ``conf/train/experiment/<name>.yaml``, composed by Hydra's compose API, so a script and the command line can
  never train two different recipes under one name. The script keeps its own ``pl.Trainer``, loop and loggers.
* :func:`evaluate` runs an evaluation suite of ``conf/eval/suite/`` on any ``nn.Module`` that maps images in
  [0, 1] to logits (RobustBench's convention), on a shipped dataset's test split, and returns the
  :class:`~afd_lightning.evaluation.EvaluationResults` that ``afd-eval`` writes to ``results.json``.

Both are exported lazily by the package: ``afd_lightning.recipe(...)``, ``afd_lightning.evaluate(...)``
(``afd_lightning.evaluate`` is also the module of the ``afd-eval`` command; calling it calls :func:`evaluate`).
docs/library.md shows them in a script.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from afd_lightning.errors import ConfigError

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from omegaconf import DictConfig
    from torch import nn

    from afd_lightning.evaluation.report.schema import EvaluationResults

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- overrides
def _hydra_value(value: Any) -> str:
    """``value`` written in Hydra's override grammar (strings quoted, so any text arrives as it is)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot pass a {type(value).__name__} as a config value: {value!r}")


def _overrides(overrides: Sequence[str], keys: Mapping[str, Any]) -> list[str]:
    """The command-line overrides a call stands for: ``overrides`` as written, then one per keyword.

    A keyword is a config key with ``.`` (``**{"trainer.max_epochs": 2}``) or ``__`` (``trainer__max_epochs=2``)
    between its parts; its value is a Python value (``True``, ``[20, 25]``, ``"at"`` for a group choice).
    """
    if isinstance(overrides, str):
        raise TypeError(f"overrides is a list of strings such as ['trainer.max_epochs=2'], not {overrides!r}")
    return [str(o) for o in overrides] + [f"{k.replace('__', '.')}={_hydra_value(v)}" for k, v in keys.items()]


def _compose(root: str, overrides: list[str]) -> DictConfig:
    """The shipped config ``root`` (train | eval) with ``overrides``, after the preflight's checks.

    The preflight answers a typo with a did-you-mean, a bad ε, a missing checkpoint, in one line; what it leaves
    to Hydra comes back as a :class:`~afd_lightning.errors.ConfigError` too.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from afd_lightning.config.paths import config_dir
    from afd_lightning.config.preflight import check

    check(root, overrides)
    try:
        with initialize_config_dir(config_dir=str(config_dir(root)), version_base="1.3"):
            return compose(config_name=root, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None


# ---------------------------------------------------------------------------------------------- recipe
@dataclasses.dataclass
class Recipe:
    """What a recipe builds, for one's own training script.

    Attributes:
        name: the experiment (``conf/train/experiment/<name>.yaml``), None for the root config's defaults.
        module: the LightningModule (:class:`~afd_lightning.methods.AFD`, ``AdversarialTraining``...), its networks
            initialised from the recipe's seed, the composed config recorded as its hyperparameters (so its
            checkpoints load with :func:`afd_lightning.load_classifier` and evaluate with ``afd-eval``).
        datamodule: the LightningDataModule of the recipe's dataset and split.
        trainer_kwargs: the ``pl.Trainer`` arguments of ``conf/train/trainer/`` (``max_epochs``, ``precision``,
            ``inference_mode=False`` for the validation attacks, ...), with the strategy the training
            command picks (DDP with unused-parameter detection for AFD on several devices). No callbacks or
            loggers: the script brings its own.
        config: the composed, resolved config everything above was built from.
    """

    name: str | None
    module: pl.LightningModule
    datamodule: pl.LightningDataModule
    trainer_kwargs: dict[str, Any]
    config: DictConfig

    def trainer_arguments(self, **overrides) -> dict[str, Any]:
        """``trainer_kwargs`` with ``overrides``, the strategy chosen again for the devices asked for (the recipe's
        ``trainer.strategy`` or ``strategy=`` kept when they name one)."""
        kwargs = {**self.trainer_kwargs, **overrides}
        asked = overrides.get("strategy", self.config.trainer.get("strategy", "auto"))
        kwargs["strategy"] = _strategy({**kwargs, "strategy": asked}, self.module)
        return kwargs

    def trainer(self, **overrides) -> pl.Trainer:
        """``pl.Trainer`` of :meth:`trainer_arguments` (``devices=2``, ``precision="bf16-mixed"``, ``logger=...``)."""
        import pytorch_lightning as pl

        return pl.Trainer(**self.trainer_arguments(**overrides))


def _strategy(trainer_kwargs: Mapping[str, Any], module) -> str:
    """Lightning's strategy for these Trainer arguments, as ``afd-train`` picks it (one rule, :mod:`afd_lightning.run.strategy`)."""
    from afd_lightning.run.strategy import choose_strategy

    return choose_strategy(
        trainer_kwargs.get("devices", 1),
        trainer_kwargs.get("num_nodes", 1),
        trainer_kwargs.get("strategy", "auto"),
        module.automatic_optimization,
    )


def recipe(
    name: str | None = None,
    *,
    overrides: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
    **keys: Any,
) -> Recipe:
    """Build the recipe ``name`` (``conf/train/experiment/<name>.yaml``) as ``afd-train experiment=<name>`` does.

    ``overrides`` are command-line overrides as written (``["trainer.max_epochs=2", "method=at"]``); keywords are
    the same with Python values: ``recipe("paper_digits_afd", seed=1, **{"trainer.max_epochs": 2})`` (a key's
    dots may be written ``__``: ``trainer__max_epochs=2``). A key that does not exist is refused with a
    did-you-mean, before anything is built. ``output_dir``: the Trainer's ``default_root_dir`` (Lightning's
    default: the current folder).

    The seed is applied (``pl.seed_everything``) before the networks are built, as the training command does, so
    the same recipe and seed start from the same weights.
    """
    args = ([f"experiment={name}"] if name is not None else []) + _overrides(overrides, keys)
    out = str(Path(output_dir if output_dir is not None else os.getcwd()).absolute())
    cfg = _compose("train", [*args, f"paths.output_dir={_hydra_value(out)}"])

    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from afd_lightning.config import run_config
    from afd_lightning.nets.build import build_model
    from afd_lightning.process.quiet import silence_known_noise
    from afd_lightning.run.instantiation import call, check_model_fits, instantiate

    silence_known_noise()
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.dataset)
    model = call(build_model, cfg.model)
    check_model_fits(model, datamodule)
    attack, eval_attack = instantiate(cfg.attack), instantiate(cfg.eval_attack)
    module = instantiate(cfg.method, model=model, attack=attack, eval_attack=eval_attack)
    run_config.record(module, cfg)  # checkpoints carry the run config: load_classifier and afd-eval read them
    trainer_kwargs = cast(dict, OmegaConf.to_container(cfg.trainer, resolve=True))
    trainer_kwargs.pop("_target_", None)
    trainer_kwargs["strategy"] = _strategy(trainer_kwargs, module)
    return Recipe(name=name, module=module, datamodule=datamodule, trainer_kwargs=trainer_kwargs, config=cfg)


# -------------------------------------------------------------------------------------------- evaluate
def _named(model) -> dict[str, nn.Module]:
    from torch import nn

    models = dict(model) if isinstance(model, Mapping) else {_label(model): model}
    if not models:
        raise ConfigError("evaluate: no model given")
    for name, m in models.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"evaluate: {name!r} is a {type(m).__name__}, not an nn.Module mapping images to logits")
    return models


def _label(model) -> str:
    """A LightningModule of ours by its method (``AFD``), anything else by its class name."""
    return str(getattr(model, "short_name", "") or type(model).__name__)


def evaluate(
    model: nn.Module | Mapping[str, nn.Module],
    dataset: str = "digits",
    suite: str | None = "quick",
    n_samples: int | str | None = "auto",
    *,
    attack: str | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 500,
    natural: Sequence[str] = (),
    data_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> EvaluationResults:
    """Evaluate ``model`` as ``afd-eval`` evaluates a checkpoint, on the test split of ``dataset``.

    Args:
        model: any ``nn.Module`` mapping images in [0, 1] (N, C, H, W) to logits (normalisation inside the
            model), or ``{"name": model, ...}`` to compare several side by side on the same samples.
        dataset: a shipped dataset (``conf/train/dataset/<name>.yaml``: digits, mnist10k, mnist, cifar10, cifar100);
            its test split, threat model (the Table 1 ε) and ε tables (``meta.family``) are used.
        suite: an evaluation suite of ``conf/eval/suite/`` (quick, paper, autoattack, full, ...).
        n_samples: images of the seeded test subset: ``auto`` (the suite's choice, else at most 1000), a number,
            or None for the whole test split.
        attack: one attack of ``conf/eval/attack/`` instead of the suite (``pgd_linf``, ``autoattack``...).
        seed: the subset and every attack's randomness.
        device: ``auto`` (cuda when available), ``cpu``, ``cuda:1``...
        natural: names of naturally trained models among ``model``, on which every attack must succeed (the
            attack self-test of the checks).
        data_dir: where MNIST/CIFAR files are (default: ``$AFD_DATA_DIR`` or ``./data``).
        output_dir: also write ``results.json``, ``tables.md``, ``curves.md`` and the figures there.
        overrides: further ``afd-eval`` overrides (``["suite.attacks.square.n_queries=100", "checks.z=3"]``).
        progress: a progress bar over the attacks.

    Returns:
        The results, as ``results.json`` holds them (``EvaluationResults.models[name].attacks``, ``.worst_case``,
        ``.checks``); the evaluation runs in this process, with the torch threads it has.
    """
    start = time.perf_counter()
    models = _named(model)
    from omegaconf import OmegaConf, open_dict

    choice = [f"attack={attack}"] if attack is not None else [f"suite={suite}"]
    settings = [
        f"n_samples={_hydra_value(n_samples)}",
        f"seed={int(seed)}",
        f"device={_hydra_value(device)}",
        f"batch_size={int(batch_size)}",
        f"progress={_hydra_value(progress)}",
        "workers=1",
        f"output_dir={_hydra_value(None if output_dir is None else str(Path(output_dir).absolute()))}",
        *([f"data_dir={_hydra_value(str(data_dir))}"] if data_dir is not None else []),
    ]
    cfg = _compose("eval", [*choice, *settings, *_overrides(overrides, {})])

    from afd_lightning.evaluation import loading

    dataset_cfg = loading.shipped_dataset(dataset)
    meta = dataset_cfg["meta"]
    with open_dict(cfg):
        cfg.dataset = meta["name"]
        cfg.family = meta["family"] if cfg.get("family", "auto") == "auto" else cfg.family
    from afd_lightning.evaluation.checks.checker import settings_from_config
    from afd_lightning.evaluation.parallel import plan_shard_size
    from afd_lightning.evaluation.pipeline import validate_settings as validate  # as afd-eval checks them
    from afd_lightning.evaluation.report.schema import AttackInfo, EvaluationResults
    from afd_lightning.evaluation.suite import SuiteSettings, SweepSettings, evaluate_models
    from afd_lightning.run import provenance
    from afd_lightning.run.instantiation import check_model_fits

    batch = validate(cfg)
    record = provenance.collect(seed=int(seed), threads_setting="unchanged (library call)")
    datamodule, x, y, idx, total = loading.load_samples(dataset_cfg, cfg)
    for name, m in models.items():
        try:
            check_model_fits(m, datamodule)
        except ConfigError as err:
            raise ConfigError(f"evaluate: model {name!r}: {err}") from None
    table_eps = float(meta["eps"]) if cfg.get("table_eps", "auto") == "auto" else float(cfg.table_eps)
    out_dir = Path(str(cfg.output_dir)) if output_dir is not None else None
    attacks, _ = loading.build_attacks(cfg, log_dir=out_dir)
    torch_device = loading.pick_device(str(cfg.device))
    analyses = bool(cfg.analyses)
    if analyses and not all(hasattr(m, "encoder") and hasattr(m, "classifier") for m in models.values()):
        log.info("evaluate: the embedding analyses need models with .encoder and .classifier; skipped")
        analyses = False
    unknown = sorted(set(natural) - set(models))
    if unknown:
        raise ConfigError(f"evaluate: natural={unknown} names no model (models: {', '.join(models)})")
    suite_settings = SuiteSettings(
        table_eps=table_eps,
        sweep=SweepSettings(
            mode=str(cfg.sweep_mode),
            batch_size=batch,
            seed=int(seed),
            shard_size=plan_shard_size(cfg.get("shard_size", "auto"), torch_device.type),
        ),
        checks=settings_from_config(cfg.get("checks")),
        natural=tuple(natural),
        analyses=analyses,
        num_classes=meta.get("num_classes"),
        device=torch_device,
        progress=bool(progress),
    )
    model_results = evaluate_models(models, x, y, attacks, suite_settings)
    described = {a.name: AttackInfo.from_describe(a.describe()) for a in attacks}
    results = EvaluationResults(
        complete=True,
        dataset=meta["name"],
        family=str(cfg.family),
        table_eps=table_eps,
        n_samples=len(y),
        test_set_size=total,
        seed=int(seed),
        sweep_mode=str(cfg.sweep_mode),
        device=str(torch_device),
        sample_indices=idx.tolist(),
        attacks=list(described.values()),
        models={name: r.record(None) for name, r in model_results.items()},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=cast(dict, OmegaConf.to_container(cfg, resolve=True)),
        versions=loading.versions(),
        seconds=round(time.perf_counter() - start, 2),
    )
    record.device = str(torch_device)
    record.snapshot()
    results.provenance = record
    if out_dir is not None:
        from afd_lightning.evaluation.report import writer as report

        report.start(out_dir)
        report.finish(out_dir, results, make_plots=bool(cfg.get("plots", True)))
    return results


__all__ = ["Recipe", "evaluate", "recipe"]

"""Loggers that never hang or fail for lack of an account or a network, and that carry the whole run.

Every logger receives the resolved run config as the method's Lightning hyperparameters (see
:mod:`afd_lightning.config.run_config`): the CSV logger writes it to ``hparams.yaml``, W&B to the run's config.
The W&B logger here adds what our users' workflow needs on top of Lightning's:

* ``mode=auto``: online when an API key is configured, otherwise offline (``wandb sync`` later);
* ``group=auto``: one group per Hydra multirun (the sweep directory's name);
* ``resume_from``: a resumed training continues the W&B run its checkpoint was written under;
* ``log_model=true``: ``best.ckpt`` and ``last.ckpt`` become a ``model-<run id>`` artifact at the end of
  training, also offline (Lightning refuses ``log_model`` with ``offline=True``; the mode is passed to
  ``wandb.init`` instead).

``wandb`` itself is optional (``pip install 'afd-lightning[wandb]'``): without it, ``mode=auto`` logs a
line and the run goes on with its other loggers; an explicit mode is an error.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Literal, cast

from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger

from afd_lightning.errors import ConfigError

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")
WandbMode = Literal["online", "offline", "disabled"]  # what wandb.init(mode=...) is given
INSTALL_HINT = "pip install 'afd-lightning[wandb]'"


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def resolve_wandb_mode(mode: str = "auto") -> WandbMode:
    """``auto`` -> WANDB_MODE if set, else online with credentials, else offline."""
    if mode not in MODES:
        raise ConfigError(f"logger.wandb.mode={mode!r} is not one of {list(MODES)}")
    if mode != "auto":
        return cast(WandbMode, mode)  # one of MODES other than auto
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode is not None and not env_mode.strip():
        # An empty WANDB_MODE= (as CI scripts export) counts as unset: wandb.init itself would fail on it
        # (a pydantic validation error), so it goes from this process's environment.
        del os.environ["WANDB_MODE"]
        env_mode = None
    if env_mode in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env_mode == "dryrun" else cast(WandbMode, env_mode)
    return "online" if _has_wandb_credentials() else "offline"


def multirun_group() -> str | None:
    """The sweep directory's name inside a Hydra multirun (one W&B group per sweep); None otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra_cfg.sweep.dir).name


def stored_run_id(ckpt_path) -> str | None:
    """The W&B run id a checkpoint of ours was written under (None for runs without W&B)."""
    from afd_lightning.store.checkpoint import load_checkpoint

    meta = load_checkpoint(ckpt_path).get("afd_lightning") or {}
    run_id = meta.get("wandb_run_id") if isinstance(meta, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger whose ``log_model=True`` also works offline and aliases checkpoints by role.

    With ``log_model=True`` each checkpoint a ``ModelCheckpoint`` kept is logged once when training
    ends, as a version of the ``model-<run id>`` artifact: aliased ``best`` when its callback monitors
    a metric (our ``best.ckpt``) and ``latest`` otherwise (our ``last.ckpt``). Lightning's own
    ``log_model=True`` would alias whichever file it logs last as ``best``. ``log_model="all"`` is
    Lightning's: every checkpoint as it is written.
    """

    def __init__(self, *args, log_model: bool | Literal["all"] = False, **kwargs):
        self.log_checkpoints_at_end = log_model is True
        kwargs["log_model"] = False if log_model is True else log_model  # Lightning's own "all", or none
        super().__init__(*args, **kwargs)
        # Lightning always passes `anonymous` to wandb.init, which wandb >= 0.19 warns is obsolete;
        # tests/test_loggers.py fails if this attribute moves.
        self._wandb_init.pop("anonymous", None)
        self._kept_checkpoints: dict[int, object] = {}
        self._logged: dict[str, float] = {}

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        if self.log_checkpoints_at_end:
            self._kept_checkpoints[id(checkpoint_callback)] = checkpoint_callback

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status == "success" and self.log_checkpoints_at_end:
            self.log_checkpoints()

    def log_checkpoints(self) -> None:
        """Log the checkpoints kept by the ModelCheckpoint callbacks seen so far (each file version once)."""
        import wandb

        for callback in self._kept_checkpoints.values():
            monitor = getattr(callback, "monitor", None)
            path = getattr(callback, "best_model_path", "")
            if not path or not Path(path).is_file():
                continue
            mtime = Path(path).stat().st_mtime
            if self._logged.get(path) == mtime:
                continue
            score = getattr(callback, "best_model_score", None)
            metadata = {
                "original_filename": Path(path).name,
                "monitor": monitor,
                "score": float(score) if monitor and score is not None else None,
            }
            artifact = wandb.Artifact(name=f"model-{self.experiment.id}", type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt")
            self.experiment.log_artifact(artifact, aliases=["best"] if monitor else ["latest"])
            self._logged[path] = mtime


def wandb_logger(
    project: str,
    save_dir: str,
    mode: str = "auto",
    name: str | None = None,
    group: str | None = "auto",
    tags=(),
    id: str | None = None,  # wandb.init's name for it
    resume_from: str | None = None,
    log_model: bool | Literal["all"] = True,
    **kwargs,
) -> WandbLogger | None:
    """A :class:`WandbLogger` (see the module doc); None when wandb is not installed and ``mode=auto``."""
    resolved = resolve_wandb_mode(mode)
    try:
        import wandb  # noqa: F401
    except ImportError:
        if mode == "auto":
            log.info("wandb is not installed, so this run logs without W&B (%s to add it)", INSTALL_HINT)
            return None
        raise ConfigError(
            f"logger.wandb.mode={mode} needs the wandb package: {INSTALL_HINT}, or use logger=csv"
        ) from None
    if group == "auto":
        group = multirun_group()
    if id is None and resume_from:
        id = stored_run_id(resume_from)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")  # our own end-of-run line says where the run is (finish())
    return WandbLogger(
        project=project,
        name=name,
        save_dir=save_dir,
        id=id,
        group=group,
        tags=list(tags or ()),
        mode=resolved,
        log_model=log_model,
        **kwargs,
    )


def finish(loggers) -> None:
    """Close the W&B run (if any) and say where an offline run is and how to upload it."""
    for logger in loggers:
        if not isinstance(logger, _LightningWandbLogger):
            continue
        import wandb

        run = wandb.run
        offline = run is not None and run.settings.mode in ("offline", "dryrun")
        run_dir = Path(run.dir).parent if run is not None else None
        wandb.finish()
        if offline and run_dir is not None:
            log.info("W&B run %s saved offline in %s; upload it with: wandb sync %s", logger.version, run_dir, run_dir)
        return

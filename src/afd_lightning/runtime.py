"""The floor both entry points stand on: where the configs are, building objects from them, clear errors.

``train.py`` and ``evaluate.py`` are siblings over this module and never import each other.

Two kinds of config reach :mod:`hydra.utils.instantiate` here:

* configs the user composed on the command line (:func:`instantiate`): whatever the user names runs,
  as with any Hydra program;
* configs read back from a file, i.e. a checkpoint's stored run config: data, never code. They are
  built only through :mod:`afd_lightning.stored_config`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from afd_lightning.errors import AFDUserError, ConfigError

log = logging.getLogger(__name__)

# The top-level conf/ of the repository, installed as the package afd_lightning.conf (pyproject.toml).
CONFIG_MODULES = {"train": "afd_lightning.conf.train", "eval": "afd_lightning.conf.eval"}
TRAIN_CONFIG_PATH = f"pkg://{CONFIG_MODULES['train']}"
EVAL_CONFIG_PATH = f"pkg://{CONFIG_MODULES['eval']}"


def config_dir(root: str = "train") -> Path:
    """The folder of the shipped configs (``train`` or ``eval``), e.g. for ``hydra.initialize_config_dir``."""
    import importlib.resources

    return Path(str(importlib.resources.files(CONFIG_MODULES[root])))


def call(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with Hydra's instantiation errors unwrapped to our own clear errors."""
    from hydra.errors import InstantiationException

    try:
        return fn(*args, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, AFDUserError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def instantiate(node, **kwargs):
    """Build an object from a config the *user* composed (``hydra.utils.instantiate`` with clear errors)."""
    from hydra.utils import instantiate as _instantiate

    return call(_instantiate, node, **kwargs)


# --- checks shared by training and evaluation ----------------------------------------------------------


def check_model_fits(model, datamodule) -> None:
    """A dummy forward pass: a network that cannot take the dataset's images fails here, before training."""
    import torch

    from afd_lightning.attacks import attack_mode

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


def set_threads(setting: int | str = "auto") -> int:
    """Set torch's intra-op CPU threads for this process from the ``threads`` config key; returns the number.

    * a positive integer: that many threads;
    * ``auto``: torch's current count (its default: the cores, or an earlier ``torch.set_num_threads``)
      minus the cores other processes were using over 0.2 s (read from /proc/stat), rounded, at
      least 1. An idle machine keeps every core; a busy neighbour on a 2-core machine leaves 1
      (thread barriers on shared cores cost more than the second thread gives: docs/performance.md).
      ``OMP_NUM_THREADS``, when set, wins. Without /proc, torch's default stays. The choice is logged.
    """
    import os
    import resource
    import time

    import torch

    if setting != "auto":
        try:
            n = int(setting)
        except (TypeError, ValueError):
            n = 0
        if isinstance(setting, bool) or n < 1 or str(n) != str(setting).strip():
            raise ConfigError(f"threads={setting!r} must be auto or a positive integer (torch CPU threads)")
        torch.set_num_threads(n)
        log.info("threads: %d (set)", n)
        return n
    if os.environ.get("OMP_NUM_THREADS"):
        log.info("threads: %d (auto: OMP_NUM_THREADS=%s)", torch.get_num_threads(), os.environ["OMP_NUM_THREADS"])
        return torch.get_num_threads()
    cores = torch.get_num_threads()

    def busy_s() -> tuple[float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = resource.getrusage(resource.RUSAGE_SELF)
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK"), own.ru_utime + own.ru_stime

    try:
        (machine0, own0), t0 = busy_s(), time.perf_counter()
        time.sleep(0.2)
        (machine1, own1), wall = busy_s(), time.perf_counter() - t0
    except (OSError, ValueError, IndexError):
        log.info("threads: %d (auto: torch's default; no /proc/stat to read the load from)", torch.get_num_threads())
        return torch.get_num_threads()
    others = max(0.0, (machine1 - machine0) - (own1 - own0)) / wall
    n = max(1, min(cores, round(cores - others)))
    torch.set_num_threads(n)
    log.info("threads: %d (auto: %d cores, other processes using %.1f of them)", n, cores, others)
    return n


def run_cli(run: Callable, cfg):
    """Run an entry point's ``run(cfg)``; a user error becomes one clear line and exit status 1.

    The line is printed once (``error: ...``); the run's log file gets it too. A run directory this process
    made that holds nothing but its own logs (the command failed before doing any work) is removed.
    """
    try:
        return run(cfg)
    except AFDUserError as err:
        _log_to_files(err)
        remove_if_only_own_logs(_hydra_output_dir())
        raise SystemExit(f"error: {err}") from None


# Taken when the entry point's module is imported, i.e. before Hydra makes the run directory.
_PROCESS_START = time.time()
# What a run directory holds when a command failed before doing any work: Hydra's records, the job's log,
# the evaluation's FAILED marker.
_OWN_LOG_FILES = {"train.log", "evaluate.log", "eval.log", "FAILED"}
_HYDRA_RECORDS = {"config.yaml", "hydra.yaml", "overrides.yaml"}


def _log_to_files(err: Exception) -> None:
    """The error into the log files only: the console shows it once, as the ``error:`` line."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (err,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _hydra_output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


def _log_started_before(path: Path, start: float) -> bool:
    """True when the log's first line is dated before ``start`` (an older run's log that this one appended to)."""
    import datetime as dt
    import re

    with open(path, errors="replace") as f:
        first = f.readline()
    if not first:
        return False
    match = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", first)
    if match is None:
        return True  # not a log line of ours: keep the directory
    return dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp() < int(start)


def remove_if_only_own_logs(folder: Path | None, start: float | None = None) -> bool:
    """Remove ``folder`` if it holds only this process's logs: nothing else in it, nothing older than ``start``.

    ``start`` defaults to when this process imported the module (before Hydra made the run directory).
    Returns whether the folder was removed. A folder with anything else (checkpoints, results, an older
    run's log) is left as it is.
    """
    import shutil

    start = _PROCESS_START if start is None else start
    if folder is None or not folder.is_dir() or folder.is_symlink():
        return False
    for entry in folder.iterdir():
        if entry.name == ".hydra" and entry.is_dir() and not entry.is_symlink():
            inner = list(entry.iterdir())
            if any(f.name not in _HYDRA_RECORDS or not f.is_file() or f.is_symlink() for f in inner):
                return False
            files = inner
        elif entry.name in _OWN_LOG_FILES and entry.is_file() and not entry.is_symlink():
            files = [entry]
            if entry.suffix == ".log" and _log_started_before(entry, start):
                return False
        else:
            return False
        if any(f.stat().st_mtime < start - 1 for f in files):
            return False
    for handler in logging.getLogger().handlers:  # let go of the log file before it goes
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder:
            handler.close()
    shutil.rmtree(folder)
    log.debug("removed %s: the command failed before doing any work", folder)
    return True

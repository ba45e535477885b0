"""The command-line wrapper of both entry points: a user error becomes one clear line and exit status 1."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from afd_lightning.errors import AFDUserError
from afd_lightning.files.reader import UnreadableFileError, read_head

log = logging.getLogger(__name__)


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

    try:
        lines = read_head(path, 4096, what="job log").decode("utf-8", errors="replace").splitlines()
    except UnreadableFileError:  # swapped for a link or a FIFO since it was listed: not ours to remove
        return True
    first = lines[0] if lines else ""
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
    if folder.parent.name == "eval" and not folder.parent.is_symlink() and not any(folder.parent.iterdir()):
        folder.parent.rmdir()  # <run dir>/eval/ made for this evaluation alone, now empty
    log.debug("removed %s: the command failed before doing any work", folder)
    return True

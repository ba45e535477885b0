"""Writing into a run or output directory without following a symlink planted there.

Every file the project writes or appends to in a run directory (``metrics.json``, ``csv/metrics.csv``,
``csv/hparams.yaml``, the lock) or an evaluation's output directory (``results.json``, ``tables.md``...)
goes through here: whole files are written to a fresh temporary file (a new name, created exclusively)
and renamed over the target, appends open the file with ``O_NOFOLLOW``. A symlink in the target's
place is refused with :class:`SymlinkRefusedError`, naming it, before anything is written.
Figures go the same way (:func:`save_figure`), log files through :class:`NoFollowFileHandler`, and a
folder the project writes into (a run's ``csv/`` and ``checkpoints/``, an evaluation's output folder)
must not be a link either (:func:`refuse_symlinked_folders`).

:class:`RunLogFileHandler` is the file handler of the Hydra job log (``<run>/train.log``, an evaluation's
``evaluate.log``): it holds what is logged in memory until the run directory's (or output folder's) checks
pass (:func:`release_run_log`), so a refused start leaves an existing log as it was.
"""

from __future__ import annotations

import csv
import errno
import functools
import logging
import os
import tempfile
from pathlib import Path

from afd_lightning.errors import AFDUserError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class SymlinkRefusedError(AFDUserError):
    """A file the project writes is a symbolic link: writing would change the file it points to."""


def _refused(path: Path) -> SymlinkRefusedError:
    target = os.readlink(path) if os.path.islink(path) else "?"
    return SymlinkRefusedError(
        f"{path} is a symbolic link (to {target}); afd-lightning never writes through a link in a run or output "
        "directory, as that would change a file outside it. Remove the link (or use another directory) and run again."
    )


def refuse_symlink(path: str | Path) -> Path:
    """``path``, or a :class:`SymlinkRefusedError` when it is a symbolic link."""
    path = Path(path)
    if path.is_symlink():
        raise _refused(path)
    return path


def refuse_symlinked_folders(*folders: str | Path) -> None:
    """A :class:`SymlinkRefusedError` for the first of ``folders`` that is a symbolic link (missing ones pass).

    Checking the files written inside such a folder is not enough: the folder's own link sends every one
    of them elsewhere.
    """
    for folder in folders:
        refuse_symlink(folder)


def open_no_follow(path: str | Path, mode: str = "a", newline: str | None = None):
    """``open(path, mode)`` for ``r``, ``w`` or ``a`` (text), refusing a symlink at ``path`` atomically (``O_NOFOLLOW``)."""
    path = Path(path)
    flags = {"r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}
    try:
        fd = os.open(path, flags[mode] | _NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            raise _refused(path) from err
        raise
    return os.fdopen(fd, mode, newline=newline, encoding="utf-8")


@functools.cache
def shared_mode() -> int:
    """The mode a new file gets under this process's umask (0o644 under 0022): what others may read of it."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _temporary(path: Path) -> tuple[int, str]:
    """A fresh temporary file beside ``path``, with the mode ``path`` gets (the umask's), not mkstemp's 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, shared_mode())
    return fd, tmp


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fresh temporary file renamed over it; a symlink at ``path`` is refused."""
    path = refuse_symlink(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a fresh temporary file renamed over it; a symlink at ``path`` is refused."""
    path = refuse_symlink(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """``fig.savefig`` into a fresh temporary file in ``path``'s folder, renamed over ``path``; a link there is refused."""
    path = refuse_symlink(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png", **savefig_kwargs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------------------------- log files
class NoFollowFileHandler(logging.FileHandler):
    """``logging.FileHandler`` whose file is opened with ``O_NOFOLLOW``: a link in its place is refused."""

    def _open(self):
        return open_no_follow(self.baseFilename, "w" if self.mode.startswith("w") else "a")


class RunLogFileHandler(NoFollowFileHandler):
    """The job log of a training run (or an evaluation), held in memory until the run directory's checks pass.

    Hydra opens its job log in the run directory before the task starts, so a start that the run-directory
    checks refuse (another method resuming into a run, a run already there, a lock held) used to append its
    lines to the old run's log. ``conf/train/hydra/default.yaml`` and ``conf/eval/eval.yaml`` make this class the
    log's file handler:
    lines are kept (formatted, in order, at most :attr:`MAX_HELD`) until :func:`release_run_log` (called by
    :class:`afd_lightning.run.rundir.RunDirectory` once its checks pass; for ``eval.py``, ``pipeline.run`` once the
    output folder passed the writer's checks) writes them and opens the file for the
    rest of the run. A start that never gets there writes its lines at exit only when the log file does not
    exist yet (a fresh directory keeps the failed start's log); an existing log is left byte-identical.
    """

    MAX_HELD = 10_000

    def __init__(self, filename, mode="a", encoding=None, delay=True, errors=None) -> None:
        super().__init__(filename, mode, encoding, delay=True, errors=errors)
        self.opened = False
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.opened:
            super().emit(record)
            return
        try:
            if len(self._held) < self.MAX_HELD:
                self._held.append(self.format(record) + self.terminator)
        except Exception:  # noqa: BLE001 -- logging's own policy: report through handleError, never raise
            self.handleError(record)

    def _write_held(self) -> None:
        if self.stream is None:
            self.stream = self._open()  # a link at the log's path is refused here
        held, self._held = self._held, []
        self.stream.write("".join(held))
        self.stream.flush()

    def open_log(self) -> None:
        """The run directory's checks passed: write what was held, and log straight to the file from now on.

        (Not ``release``: that name is ``logging.Handler``'s lock release, called on every record.)
        """
        self.acquire()  # logging.Handler's lock (typed Optional, always made in __init__)
        try:
            if not self.opened:
                self._write_held()
                self.opened = True
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            if not self.opened and self._held:
                path = Path(self.baseFilename)
                if path.parent.is_dir() and not os.path.lexists(path):
                    self._write_held()  # a fresh directory: nothing to keep intact, the failed start's log is kept
                self._held = []
        finally:
            self.release()
        super().close()


def release_run_log(to: str | Path | None = None) -> None:
    """Release every :class:`RunLogFileHandler` of the root logger (no-op outside a Hydra job).

    ``to``: write the log there instead of Hydra's run folder (``eval.py output_dir=...``: the log goes beside the
    results it describes); only a log not opened yet moves.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RunLogFileHandler):
            if to is not None and not handler.opened:
                handler.baseFilename = os.path.abspath(to)
            handler.open_log()


def remove_empty_folders(folder: str | Path, levels: int = 1) -> None:
    """Remove ``folder``, then up to ``levels - 1`` of its parents, while each is an empty real folder.

    For a folder Hydra made that nothing was written to (``eval.py output_dir=...`` writes elsewhere).
    """
    folder = Path(folder)
    for _ in range(levels):
        if folder.is_symlink() or not folder.is_dir():
            return
        try:
            folder.rmdir()  # fails (and stops the walk) on a folder that holds anything
        except OSError:
            return
        folder = folder.parent


# ------------------------------------------------------------------------------------- the CSV logger


@functools.cache
def _writer_class():
    from pytorch_lightning.core.saving import save_hparams_to_yaml
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    class NoFollowExperimentWriter(ExperimentWriter):
        """Lightning's CSV experiment writer, writing ``metrics.csv`` and ``hparams.yaml`` without following links."""

        def log_hparams(self, params) -> None:
            self.hparams.update(params)
            target = refuse_symlink(Path(self.log_dir) / self.NAME_HPARAMS_FILE)
            fd, tmp = tempfile.mkstemp(dir=self.log_dir, prefix=".hparams.", suffix=".yaml")
            os.close(fd)
            try:
                save_hparams_to_yaml(tmp, self.hparams)
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)

        def save(self) -> None:
            if not self.metrics:
                return
            new_keys = self._record_new_keys()
            path = refuse_symlink(self.metrics_file_path)
            exists = path.is_file()
            if new_keys and exists:
                with open_no_follow(path, "r", newline="") as f:
                    rows = list(csv.DictReader(f))
                with open_no_follow(path, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                    writer.writeheader()
                    writer.writerows(rows)
            with open_no_follow(path, "a" if exists else "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                if not exists:
                    writer.writeheader()
                writer.writerows(self.metrics)
            self.metrics = []

    return NoFollowExperimentWriter


@functools.cache
def _csv_logger_class():
    from lightning_fabric.loggers.logger import rank_zero_experiment
    from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger

    class CSVLogger(_LightningCSVLogger):
        """Lightning's ``CSVLogger`` whose files are written without following symlinks (see the module doc)."""

        @property
        @rank_zero_experiment
        def experiment(self):
            if self._experiment is not None:
                return self._experiment
            refuse_symlinked_folders(self.root_dir, self.log_dir)  # before makedirs: nothing created through a link
            self._fs.makedirs(self.root_dir, exist_ok=True)
            refuse_symlink(Path(self.log_dir) / "metrics.csv")
            self._experiment = _writer_class()(log_dir=self.log_dir)
            return self._experiment

    return CSVLogger


def __getattr__(name: str):
    # Lightning is imported only when the logger is built (train.py --help stays fast).
    if name == "CSVLogger":
        return _csv_logger_class()
    raise AttributeError(name)

"""Writing into a run or output directory without following a symlink planted there.

Every file the project writes or appends to in a run directory (``metrics.json``, ``csv/metrics.csv``,
``csv/hparams.yaml``, the lock) or an evaluation's output directory (``results.json``, ``tables.md``...)
goes through here: whole files are written to a fresh temporary file (a new name, created exclusively)
and renamed over the target, appends open the file with ``O_NOFOLLOW``. A symlink in the target's
place is refused with :class:`SymlinkRefusedError`, naming it, before anything is written.
"""

from __future__ import annotations

import csv
import errno
import functools
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


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a fresh temporary file renamed over it; a symlink at ``path`` is refused."""
    path = refuse_symlink(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

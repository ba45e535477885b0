"""A run directory keeps its integrity: one run at a time, no silent replacement, resumes that match.

:class:`RunDirectory` wraps a training run (``afd_lightning.train.run``):

* **Lock.** ``<run dir>/.lock`` holds the PID, host and start time of the run using the directory
  (and SLURM's job id and restart count). A second run there is refused. A lock whose PID is no
  longer alive on this host, or that an earlier start of the same (requeued) SLURM job left, is
  stale: it is replaced with a warning, under an OS lock on the directory itself (``flock``; no marker
  file is made), so two starts that both find it stale cannot both take it. A symlink planted as the
  lock is never read or written through. The lock is removed when the run ends, also on errors.
  Under DDP only global rank zero takes it (the other ranks start in the same directory).
* **No silent replacement.** A directory that already holds a run (``checkpoints/*.ckpt``,
  ``metrics.json`` or ``csv/metrics.csv``) is refused unless the run resumes from a checkpoint inside
  it (``ckpt_path=<run dir>/checkpoints/last.ckpt``, or Lightning's SLURM ``hpc_ckpt_*.ckpt``) or
  ``overwrite=true`` is given. ``overwrite=true`` deletes nothing: the old run's files move into
  ``<run dir>/overwritten-<date>/``.
* **Resume checks.** The checkpoint is read once with the safe loader (its bytes verified in memory: CRCs,
  sizes, shape; no code), its stored recipe (method, model, dataset and split, training attack:
  :mod:`afd_lightning.config.run_config` says which keys) is compared with the current config and a
  difference refused with the keys listed (``resume_check=false`` overrides), its weights must fit the network
  and method being built, and the rest of what Lightning restores must have the shape this run writes
  (:func:`afd_lightning.store.resume.check_resume_state`; both always checked).
* **Read once.** Lightning resumes from that verified dict, handed over in memory
  (:class:`afd_lightning.store.resume.VerifiedCheckpointIO`), never from the path again: a file swapped after
  the checks is not trained on. Every other checkpoint Lightning reads (the test's best or last checkpoint)
  goes through the same verified reader.
* **Resume appends** to ``csv/metrics.csv`` (Lightning's CSV logger would delete it).
* **Preemption** (SIGTERM, or SIGUSR1 routed to it) ends with exit status 143 once the checkpoint
  is written, and the log says how to resume.

Hydra's own ``.hydra/`` writing is off (``hydra.output_subdir: null``): :mod:`afd_lightning.run.hydra_record`
writes the same three files once the checks above have passed, so a refused start leaves the old run's
``.hydra/*.yaml`` as they were. The job log (``train.log``) is held in memory until then too
(:class:`afd_lightning.files.writer.RunLogFileHandler`). A ``checkpoints/``, ``csv/`` or ``.hydra/`` that is a
symbolic link is refused before anything is read or written.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig

from afd_lightning.config import run_config
from afd_lightning.errors import AFDUserError, CheckpointError, ConfigError
from afd_lightning.files.reader import UnreadableFileError, read_head, read_json
from afd_lightning.files.writer import refuse_symlink, refuse_symlinked_folders, release_run_log, write_text_atomic
from afd_lightning.run import hydra_record
from afd_lightning.store.checkpoint import describe_mismatch, load_checkpoint, refuse_directory

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what shells and schedulers expect from a job stopped by a signal
RUN_OUTPUTS = ("checkpoints", "csv", "metrics.json")  # what overwrite=true moves aside (plus hpc_ckpt_*.ckpt)
LINK_FREE_FOLDERS = ("checkpoints", "csv", ".hydra")  # refused when a symbolic link, before anything is read or written


class RunDirectoryError(AFDUserError):
    """The run directory is in use, or holds another run."""


def is_global_rank_zero() -> bool:
    """Global rank zero before the trainer exists, as Lightning sees it.

    ``rank_zero_only.rank`` is the rank Lightning read from the launcher's variables when it was imported
    (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``); a local rank counts only on node 0
    (``NODE_RANK`` / ``GROUP_RANK``, read by Lightning's default cluster environment).
    """
    from lightning_fabric.plugins.environments import LightningEnvironment
    from pytorch_lightning.utilities import rank_zero_only

    if "RANK" not in os.environ and LightningEnvironment().node_rank() != 0:
        return False
    return rank_zero_only.rank == 0  # type: ignore[attr-defined]  # set by Lightning at import, not in its hints


# ---------------------------------------------------------------------------------------------- the lock
@contextlib.contextmanager
def _os_lock(folder: Path, timeout: float = 30.0):
    """An exclusive OS lock on ``folder`` itself (``flock`` on its descriptor), so no marker file is left in it.

    Where ``flock`` does not exist (Windows), ``filelock`` on ``<folder>/.lock.guard`` instead (a link there refused).
    """
    try:
        import fcntl
    except ImportError:
        from filelock import FileLock, Timeout

        guard = FileLock(str(refuse_symlink(folder / ".lock.guard")))
        try:
            guard.acquire(timeout=timeout)
        except Timeout as err:
            raise RunDirectoryError(
                f"run directory {folder}: another start held it for {timeout:.0f} s; try again"
            ) from err
        try:
            yield
        finally:
            guard.release()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunDirectoryError(
                        f"run directory {folder}: another start held it for {timeout:.0f} s; try again"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class RunLock:
    """``<run dir>/.lock``: who runs there, written whole (temporary file + rename) under an OS lock."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.owned = False

    @staticmethod
    def _me() -> dict:
        env = os.environ
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "slurm_job_id": env.get("SLURM_JOB_ID"),
            "slurm_restart_count": env.get("SLURM_RESTART_COUNT"),
        }

    def _stale(self, holder: dict | None) -> str | None:
        """Why the lock is stale, or None when its run may still be going."""
        me = self._me()
        if holder is None:
            return "it cannot be read"
        if holder.get("host") == me["host"]:
            if holder["pid"] == me["pid"]:
                return None
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return f"process {holder['pid']} is no longer running on {me['host']}"
            except PermissionError:
                return None  # alive, another user's
            return None
        job = holder.get("slurm_job_id")
        if job and job == me["slurm_job_id"] and holder.get("slurm_restart_count") != me["slurm_restart_count"]:
            return f"an earlier start of SLURM job {job} (before a requeue) left it"
        return None

    def acquire(self) -> None:
        """Take the lock, replacing a stale one; an OS lock (:func:`_os_lock`) makes check-and-take atomic.

        Two starts that both find a stale lock are serialised by the OS lock on the run directory: the
        second finds the first one's fresh lock and is refused.
        """
        me = self._me()
        with _os_lock(self.path.parent):
            if os.path.lexists(self.path):
                holder = self._holder()
                why = self._stale(holder)
                if holder is not None and why is None:  # (an unreadable lock is always stale)
                    raise RunDirectoryError(
                        f"run directory {self.path.parent} is in use by process {holder['pid']} on host "
                        f"{holder.get('host')} (since {holder.get('started')}; lock file {self.path}). Two runs "
                        "in one directory would mix their checkpoints and logs: pick another hydra.run.dir, or "
                        "wait for that run to end. If no such run is going on, delete the lock file."
                    )
                log.warning("replacing the stale lock %s (%s): %s", self.path, why, holder)
                self.path.unlink()
            write_text_atomic(self.path, json.dumps(me) + "\n")
            self.owned = True

    def _holder(self) -> dict | None:
        if self.path.is_symlink():
            return None  # never read through a link: a planted one is a lock nobody holds
        try:
            holder = read_json(self.path, max_bytes=4096, what="run lock")
        except UnreadableFileError:
            return None
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None

    def release(self) -> None:
        if self.owned:
            holder = self._holder()
            if holder is not None and holder["pid"] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.owned = False


# ------------------------------------------------------------------------------- a directory that holds a run
def previous_outputs(run_dir: Path) -> list[Path]:
    found = sorted((run_dir / "checkpoints").glob("*.ckpt")) if (run_dir / "checkpoints").is_dir() else []
    found += [p for p in (run_dir / "metrics.json", run_dir / "csv" / "metrics.csv") if p.is_file()]
    return found


def _inside(path: Path, run_dir: Path) -> bool:
    return run_dir.resolve() in path.resolve().parents


def check_not_used(run_dir: Path, ckpt_path: str | None, overwrite: bool) -> None:
    """Refuse a directory holding a run unless resuming it in place or ``overwrite=true`` (old files moved aside)."""
    if ckpt_path is not None and _inside(Path(ckpt_path), run_dir):
        return  # resuming this run where it stopped
    if ckpt_path is None and any(run_dir.glob("hpc_ckpt_*.ckpt")):
        return  # Lightning's SLURM auto-requeue resumes from its hpc_ckpt_<n>.ckpt by itself
    found = previous_outputs(run_dir)
    if not found:
        return
    names = ", ".join(str(p.relative_to(run_dir)) for p in found[:4])
    if not overwrite:
        resume = run_dir / "checkpoints" / "last.ckpt"
        raise RunDirectoryError(
            f"run directory {run_dir} already holds a run ({names}); a new run there would replace its "
            f"checkpoints and metrics. Resume it with ckpt_path={resume}, pick another hydra.run.dir, or pass "
            f"overwrite=true to move the old run's files aside into {run_dir}/overwritten-<date>/."
        )
    aside = run_dir / f"overwritten-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 1000):
        if not aside.exists():
            break
        aside = aside.with_name(f"{aside.name.split('.')[0]}.{i}")
    aside.mkdir()
    moved = [p for p in (*(run_dir / n for n in RUN_OUTPUTS), *run_dir.glob("hpc_ckpt_*.ckpt")) if p.exists()]
    for path in moved:
        os.replace(path, aside / path.name)
    log.warning(
        "overwrite=true: moved the previous run's %s into %s (nothing was deleted)",
        ", ".join(p.name for p in moved),
        aside,
    )


# --------------------------------------------------------------------------------------- resume checks
def resolve_ckpt_path(ckpt_path) -> tuple[str | None, dict | None]:
    """The checkpoint to resume from, read with the safe loader (CRCs, tensors and plain data only)."""
    if ckpt_path is None:
        return None, None
    path = refuse_directory(str(ckpt_path), f"ckpt_path={ckpt_path}")
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; pass the path of a checkpoint to resume from")
    return str(path), load_checkpoint(path)  # clear error for a corrupt or unsafe file before Lightning touches it


def check_recipe(checkpoint: dict, ckpt_path: str | None, cfg: DictConfig) -> None:
    stored = run_config.from_checkpoint(checkpoint, ckpt_path)
    differ = run_config.recipe_differences(stored, run_config.current_recipe(cfg))
    if differ:
        shown = "\n  ".join(differ[:15]) + (f"\n  ... and {len(differ) - 15} more" if len(differ) > 15 else "")
        raise ConfigError(
            f"ckpt_path={ckpt_path} was trained with another recipe than this run's config, so resuming would "
            f"silently mix the two:\n  {shown}\nPass the first run's overrides again (its .hydra/overrides.yaml "
            "lists them), or resume_check=false to resume anyway."
        )


def check_weights_fit(checkpoint: dict, ckpt_path: str | None, method) -> None:
    """The checkpoint's weights must fit the method and network being built (also with resume_check=false)."""
    mismatch = describe_mismatch(method, checkpoint["state_dict"])
    if mismatch:
        stored = (checkpoint.get("afd_lightning") or {}).get("method", "another method")
        raise CheckpointError(
            f"ckpt_path={ckpt_path} holds the weights of another method or network ({stored}) than this run "
            f"builds ({type(method).__name__}): {mismatch}. Resume with the first run's method= and model= settings."
        )


# ----------------------------------------------------------------------------------------- the CSV log
def keep_csv_history(trainer) -> None:
    """Resuming appends to ``csv/metrics.csv``: Lightning's CSV writer deletes the file when it is created."""
    from pytorch_lightning.loggers import CSVLogger

    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        refuse_symlink(path)  # never append through a link planted in the run directory
        if not path.is_file():
            continue
        kept = path.with_name("metrics.csv.resumed")
        os.replace(path, kept)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = logger.experiment
        os.replace(kept, path)
        first = read_head(path, 1 << 20, what="metrics CSV").decode("utf-8", errors="replace").splitlines()[:1]
        header = next(csv.reader(first), [])
        writer.metrics_keys = list(header)  # rows for known keys are appended; new keys rewrite the header, rows kept
        log.info("resuming: appending to %s", path)


# ------------------------------------------------------------------------------------------- the run
class RunDirectory:
    """Context manager around one training run in ``cfg.paths.output_dir`` (see the module doc)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.path = Path(cfg.paths.output_dir)
        self.rank_zero = is_global_rank_zero()
        self.lock = RunLock(self.path)
        self.ckpt_path: str | None = None
        self.checkpoint: dict | None = None

    def __enter__(self) -> RunDirectory:
        cfg = self.cfg
        # A linked folder would send every checkpoint or CSV row elsewhere (and a resume would read from there).
        refuse_symlinked_folders(*(self.path / name for name in LINK_FREE_FOLDERS))
        self.ckpt_path, self.checkpoint = resolve_ckpt_path(cfg.get("ckpt_path"))
        if self.checkpoint is not None and cfg.get("resume_check", True):
            check_recipe(self.checkpoint, self.ckpt_path, cfg)
        self.path.mkdir(parents=True, exist_ok=True)
        if self.rank_zero:
            self.lock.acquire()
            try:
                check_not_used(self.path, self.ckpt_path, bool(cfg.get("overwrite", False)))
                hydra_record.write(self.path, cfg)  # only now: a refused start leaves the old record as it was
                release_run_log()  # and only now does the job log (<run>/train.log) get this start's lines
            except BaseException:
                self.lock.release()
                raise
        else:
            release_run_log()
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

    def prepare(self, trainer, method) -> None:
        """After the trainer is built, before fit: the verified reader, and on resume weights and state that fit,
        the verified checkpoint handed to Lightning in memory, and the CSV history kept."""
        from afd_lightning.store import resume

        if self.checkpoint is None:
            resume.install(trainer)
            return
        check_weights_fit(self.checkpoint, self.ckpt_path, method)
        resume.check_resume_state(self.checkpoint, self.ckpt_path, trainer, method)
        resume.install(trainer, {str(self.ckpt_path): self.checkpoint})
        self.checkpoint = None  # Lightning's to restore now (handed over once, then freed)
        if self.rank_zero:
            keep_csv_history(trainer)

    @contextlib.contextmanager
    def exit_143_on_preemption(self, trainer):
        """A stop signal (Lightning's ``SIGTERMException``) ends the process with 143, after the checkpoint."""
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        from afd_lightning.callbacks import PreemptionCheckpoint

        try:
            yield
        except SIGTERMException:
            saved = [cb.path for cb in trainer.callbacks if isinstance(cb, PreemptionCheckpoint) and cb.path.is_file()]
            if saved:
                how = (
                    f"the checkpoint {saved[0]} was written; resume with the same overrides plus "
                    f"ckpt_path={saved[0]} hydra.run.dir={self.path}"
                )
            else:
                how = "no checkpoint was written on the signal (callbacks.preemption is off)"
            log.warning(
                "preempted: stopped by a signal at epoch %d; %s. Exiting with status %d.",
                trainer.current_epoch,
                how,
                PREEMPTED_EXIT_CODE,
            )
            raise SystemExit(PREEMPTED_EXIT_CODE) from None

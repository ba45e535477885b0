"""Checkpoints when the job is told to stop (SIGTERM, SLURM's pre-timeout SIGUSR1) and every n batches."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class PreemptionCheckpoint(pl.Callback):
    """Writes ``<dirpath>/<filename>`` every ``every_n_batches`` training batches and on a stop signal.

    * ``every_n_batches``: for long epochs; counts training batches, not ``trainer.global_step``
      (which AFD advances three times per batch). ``null`` turns it off. The last batch of an
      epoch is left to the end-of-epoch checkpoint.
    * ``signals``: SIGTERM (what schedulers and ``kill`` send) and SIGUSR1 (SLURM's pre-timeout
      signal with ``#SBATCH --signal=SIGUSR1@90``, Lightning's convention). Lightning already
      turns SIGTERM into a stop after the current batch (``SIGTERMException``); SIGUSR1 is routed
      to the same path unless Lightning's SLURM auto-requeue handles it (then Lightning writes its
      ``hpc_ckpt_*.ckpt`` and requeues the job). When the stop comes, this callback writes the
      checkpoint (atomically, all ranks taking part) and the process exits without testing.

    Checkpoints are written with Lightning's atomic save, so a kill while writing leaves the
    previous file intact.
    """

    def __init__(
        self,
        dirpath: str,
        filename: str = "last.ckpt",
        every_n_batches: int | None = None,
        signals: list[str] | tuple[str, ...] = ("SIGTERM", "SIGUSR1"),
    ):
        if every_n_batches is not None and every_n_batches < 1:
            raise ValueError(f"every_n_batches must be >= 1 or null, got {every_n_batches}")
        self.path = Path(dirpath) / filename
        self.every_n_batches = every_n_batches
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self._previous: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning has registered its own handlers by now (SIGTERM always; SIGUSR1 under SLURM auto-requeue).
        for signum in self.signals:
            if signum == signal.SIGTERM:
                continue
            current = signal.getsignal(signum)
            if current in (None, signal.SIG_DFL, signal.SIG_IGN):
                self._previous[signum] = current
                signal.signal(signum, self._as_sigterm)

    @staticmethod
    def _as_sigterm(signum, frame) -> None:
        log.info("received signal %s: stopping after this batch with a checkpoint, as for SIGTERM", signum)
        signal.raise_signal(signal.SIGTERM)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_batches
        if n is None or (batch_idx + 1) % n or batch_idx + 1 >= trainer.num_training_batches:
            return
        trainer.save_checkpoint(self.path)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return  # e.g. a NaN loss: keep the last good checkpoint as it is
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning(
                "stopped by a signal at epoch %d, batch %d: saved %s; resume with ckpt_path=%s",
                trainer.current_epoch,
                trainer.fit_loop.epoch_loop.batch_progress.current.completed,
                self.path,
                self.path,
            )


def stop_if_signalled(trainer) -> None:
    """Raise Lightning's ``SIGTERMException`` if a stop signal came while Lightning was not training.

    Lightning records SIGTERM (``trainer.received_sigterm``) in every stage but only its training loop
    acts on it: a signal during the last validation or during ``trainer.test`` would be swallowed and the
    run would end with status 0 and a metrics.json, as if it had finished. ``train.run`` calls this after
    fit and after test, so such a run exits 143 too (schedulers see it did not finish).
    """
    if getattr(trainer, "received_sigterm", False):
        raise SIGTERMException

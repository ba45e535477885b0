"""Callbacks for long runs, configured in ``conf/train/callbacks/default.yaml`` (none needs train.py).

* :class:`ExactResume` (``resume.py``): random state and data position in every checkpoint, so a
  resumed run ends with bit-identical weights on CPU.
* :class:`PreemptionCheckpoint` (``preemption.py``): ``last.ckpt`` on SIGTERM / SIGUSR1 and,
  optionally, every ``every_n_batches`` training batches.
* :class:`DiscriminatorHealth` (``health.py``): a warning when AFD's Da collapses.
* :class:`EpochSummary` (``progress.py``): one INFO line per training epoch; ``progress_callbacks`` picks the
  progress bar (``train.build`` adds it).
* :class:`CheckpointPathGuard` (``checkpoint_path_guard.py``): on resume, checkpoint paths from the callback
  state are kept only if they are .ckpt files below the run's checkpoint directory. Not a config entry:
  ``train.build`` adds it to every trainer.
"""

from afd_lightning.callbacks.checkpoint_path_guard import CheckpointPathGuard
from afd_lightning.callbacks.health import DiscriminatorHealth
from afd_lightning.callbacks.preemption import PreemptionCheckpoint
from afd_lightning.callbacks.progress import EpochSummary
from afd_lightning.callbacks.resume import ExactResume, capture_rng_state, restore_rng_state

__all__ = [
    "CheckpointPathGuard",
    "DiscriminatorHealth",
    "EpochSummary",
    "ExactResume",
    "PreemptionCheckpoint",
    "capture_rng_state",
    "restore_rng_state",
]

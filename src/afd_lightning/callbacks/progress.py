"""Callbacks that show a run's progress: one INFO line per epoch in the log, and a progress bar that suits the output.

* :class:`EpochSummary` (``callbacks.epoch_summary``) logs, at the end of every training epoch, the
  epoch, its training losses, ``val/acc_clean`` and ``val/acc_adv`` and the seconds it took, through
  Python logging: Hydra writes it to the console and to ``<run dir>/train.log``, so a run on a cluster
  can be followed with ``tail -f``.
* :func:`progress_callbacks` gives the trainer Lightning's TQDM bar unless a progress bar is
  configured. Lightning would pick its rich bar when ``rich`` is installed, and that bar writes
  nothing when the output is not a terminal. When stderr is not a TTY (a batch job, ``> file``),
  the bar refreshes every ``NON_TTY_REFRESH`` batches so the file does not fill up with updates.
"""

from __future__ import annotations

import logging
import sys
import time

from pytorch_lightning.callbacks import Callback, ProgressBar, TQDMProgressBar

log = logging.getLogger(__name__)

NON_TTY_REFRESH = 50


class EpochSummary(Callback):
    """One INFO line per training epoch: losses (``train/loss*``), validation accuracies, seconds.

    Args:
        keys: extra metric keys to show besides the losses and ``val/acc_clean``/``val/acc_adv``.
        digits: decimals of each value.
    """

    def __init__(self, keys=(), digits: int = 4):
        self.keys = tuple(keys)
        self.digits = digits
        self._start: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        seconds = time.monotonic() - self._start if self._start is not None else float("nan")
        metrics = trainer.callback_metrics
        shown = [k for k in sorted(metrics) if k.startswith("train/loss")]
        shown += [k for k in ("val/acc_clean", "val/acc_adv", *self.keys) if k in metrics and k not in shown]
        values = " ".join(f"{k}={float(metrics[k]):.{self.digits}f}" for k in shown)
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("epoch %d/%s %s (%.1f s)", trainer.current_epoch + 1, total, values, seconds)


def progress_callbacks(enable_progress_bar: bool, callbacks) -> list[Callback]:
    """The TQDM bar to add to ``callbacks`` (none when disabled or when one is configured already)."""
    if not enable_progress_bar or any(isinstance(c, ProgressBar) for c in callbacks):
        return []
    return [TQDMProgressBar(refresh_rate=1 if sys.stderr.isatty() else NON_TTY_REFRESH)]

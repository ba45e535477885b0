"""Callbacks for long runs: exact resume, checkpoints on preemption, and the health of AFD's game.

All three are configured in ``afd_lightning/conf/callbacks/default.yaml``; none needs anything from train.py.

* :class:`ExactResume` stores the random-number state (torch CPU and CUDA, numpy, python) in
  every checkpoint and restores it where an uninterrupted run would continue, together with the
  position in the epoch's shuffled data, so a resumed run ends with bit-identical weights on CPU.
* :class:`PreemptionCheckpoint` writes ``last.ckpt`` every ``every_n_batches`` training batches
  (optional) and when the job is told to stop (SIGTERM, or SLURM's pre-timeout SIGUSR1).
* :class:`DiscriminatorHealth` warns when AFD's adversarial decoder Da has collapsed: its
  accuracy pinned at chance (it no longer tells clean from perturbed embeddings) or at 100%
  (the encoder no longer gets a useful gradient from it) for ``patience`` epochs.
"""
from __future__ import annotations

import logging
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- random state
def capture_rng_state() -> dict[str, Any]:
    """Every global generator a run draws from, as tensors, ints and tuples only.

    Checkpoints are read back with ``torch.load(weights_only=True)``, which refuses numpy
    objects, so numpy's key array travels as an int64 tensor.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": (int(version), torch.tensor(internal, dtype=torch.int64), gauss_next),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # a different number of GPUs: seed every device from the saved first one
            for device in range(torch.cuda.device_count()):
                torch.cuda.set_rng_state(cuda_states[0], device)


class ExactResume(pl.Callback):
    """Makes ``ckpt_path=...`` resume bit for bit: random state and position in the epoch's data.

    Lightning restores weights, the three optimizers and schedulers, and the epoch/step counters,
    but not the random generators that drive the attacks' random starts and the data order (the
    DataLoader draws its shuffle seed from torch's global generator when an epoch's iterator is
    made and first read). This callback stores, in every checkpoint:

    * ``rng``: the state at the moment the checkpoint is written (after validation for the
      end-of-epoch checkpoints, so validation's attack is already accounted for);
    * ``epoch_rng``: the state just before the current epoch's training iterator was made;
    * ``batches_done``: training batches completed in the current epoch (0 at an epoch's end).

    On resume Lightning makes the first epoch's iterator right after loading the checkpoint
    (``FitLoop.setup_data``). From an end-of-epoch checkpoint, ``rng`` is put back at load time,
    which is where the uninterrupted run made its next iterator. From a mid-epoch checkpoint
    (``every_n_batches`` or preemption), ``epoch_rng`` is put back so that the epoch is reshuffled
    identically; at ``on_train_start`` the batches already trained on are skipped and ``rng``
    is put back.

    A sanity-check validation (``num_sanity_val_steps > 0``) leaves the generators as it found
    them, so it does not change the run either.

    Under DDP every rank is seeded alike and draws the same numbers, so rank 0's state (the one
    written to the checkpoint) is every rank's state.
    """

    def __init__(self) -> None:
        self._epoch_rng: dict | None = None
        self._batches_done = 0
        self._in_epoch = False
        self._iterator_made = False  # whether the current epoch's iterator exists already
        self._resumed = False
        self._pending: dict | None = None  # a mid-epoch checkpoint waiting for on_train_start
        self._sanity_stash: dict | None = None

    # -- what goes into the checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": capture_rng_state(),
            "epoch_rng": self._epoch_rng,
            "batches_done": self._batches_done if self._in_epoch else 0,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed = True
        if state_dict.get("batches_done") and state_dict.get("epoch_rng") is not None:
            self._epoch_rng = state_dict["epoch_rng"]
            self._pending = state_dict
        else:
            self._epoch_rng = state_dict["rng"]
        restore_rng_state(self._epoch_rng)

    # -- keeping track in a live run
    def on_fit_start(self, trainer, pl_module) -> None:
        if not self._resumed:  # the first epoch's iterator is made after this, in FitLoop.setup_data
            self._epoch_rng = capture_rng_state()
        self._iterator_made = True

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._sanity_stash = capture_rng_state()

    def on_sanity_check_end(self, trainer, pl_module) -> None:
        if self._sanity_stash is not None:
            restore_rng_state(self._sanity_stash)
            self._sanity_stash = None

    def on_train_start(self, trainer, pl_module) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not trainer.fit_loop.restarted_mid_epoch:
            restore_rng_state(pending["rng"])  # a restart Lightning classifies otherwise: keep the state at least
            return
        # Lightning continues at batch `batches_done` but reads a fresh iterator, which (made from
        # epoch_rng) yields the interrupted epoch's order from its start: skip what was trained on.
        skip = int(pending["batches_done"])
        iterator = trainer.fit_loop._data_fetcher.iterator
        for _ in range(skip):
            next(iterator)
        self._batches_done, self._in_epoch = skip, True
        restore_rng_state(pending["rng"])

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if not self._iterator_made:  # later epochs of a fit() make their iterator right after this hook
            self._epoch_rng = capture_rng_state()
        self._batches_done, self._in_epoch = 0, True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches_done = batch_idx + 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Runs before ModelCheckpoint's end-of-epoch save (monitoring callbacks come last).
        self._in_epoch = False
        self._iterator_made = False


# ----------------------------------------------------------------------------- preemption
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

    def __init__(self, dirpath: str, filename: str = "last.ckpt", every_n_batches: int | None = None,
                 signals: list[str] | tuple[str, ...] = ("SIGTERM", "SIGUSR1")):
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
                trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.completed,
                self.path, self.path,
            )


# ----------------------------------------------------------------------------- AFD health
class DiscriminatorHealth(pl.Callback):
    """Warns when AFD's adversarial decoder Da collapses, and logs ``train/disc_collapsed`` (0 or 1).

    Reads the epoch means AFD logs: ``train/disc_acc_clean`` (fraction of clean embeddings Da
    calls clean) and ``train/disc_acc_adv`` (fraction of perturbed ones it calls perturbed).

    * chance: ``|(acc_clean + acc_adv) / 2 - 0.5| <= chance_margin`` -- Da no longer separates
      clean from perturbed embeddings (dead or not learning), so the encoder's step 3 is noise;
    * perfect: ``min(acc_clean, acc_adv) >= perfect_above`` -- Da wins outright, the encoder
      cannot catch up (often too high ``optimizer_disc.lr`` or too low ``optimizer_enc.lr``).

    Either for ``patience`` consecutive epochs gives one rank-zero warning per episode naming
    the state, the accuracies and the three losses. The first ``warmup_epochs`` epochs do not
    count: at the start of the game Da is at chance by construction (it needs a few hundred
    updates to separate the embeddings). Methods without a discriminator log no such metrics
    and are left alone.
    """

    KEYS = ("train/disc_acc_clean", "train/disc_acc_adv")
    LOSSES = ("train/loss_cls", "train/loss_disc", "train/loss_enc")

    def __init__(self, patience: int = 5, chance_margin: float = 0.05, perfect_above: float = 0.99,
                 warmup_epochs: int = 5):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.chance_margin, self.perfect_above = patience, chance_margin, perfect_above
        self.warmup_epochs = warmup_epochs
        self.state: str | None = None  # "chance" | "perfect" | None
        self.streak = 0
        self.warned = False
        self.warnings: list[str] = []

    def classify(self, acc_clean: float, acc_adv: float) -> str | None:
        if min(acc_clean, acc_adv) >= self.perfect_above:
            return "perfect"
        if abs((acc_clean + acc_adv) / 2 - 0.5) <= self.chance_margin:
            return "chance"
        return None

    def update(self, metrics: dict[str, float], epoch: int) -> bool:
        """Feeds one epoch's metrics; returns whether Da counts as collapsed after it."""
        if not all(k in metrics for k in self.KEYS):
            return False
        acc_clean, acc_adv = (float(metrics[k]) for k in self.KEYS)
        state = self.classify(acc_clean, acc_adv) if epoch >= self.warmup_epochs else None
        if state is None or state != self.state:
            self.warned = False
            self.streak = 0
        self.state = state
        self.streak = self.streak + 1 if state else 0
        collapsed = state is not None and self.streak >= self.patience
        if collapsed and not self.warned:
            losses = ", ".join(f"{k}={float(metrics[k]):.4f}" for k in self.LOSSES if k in metrics)
            what = ("at chance: it no longer tells clean from perturbed embeddings" if state == "chance"
                    else "at 100%: the encoder gets no useful signal from it")
            message = (
                f"AFD discriminator collapsed at epoch {epoch}: Da's accuracy has been {what} for "
                f"{self.streak} epochs (disc_acc_clean={acc_clean:.3f}, disc_acc_adv={acc_adv:.3f}; {losses}). "
                "Check method.optimizer_disc.lr / method.optimizer_enc.lr and the attack strength."
            )
            self.warnings.append(message)
            rank_zero_warn(message)
            self.warned = True
        return collapsed

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {k: v.item() if torch.is_tensor(v) else v for k, v in trainer.callback_metrics.items()}
        if not all(k in metrics for k in self.KEYS):
            return
        collapsed = self.update(metrics, trainer.current_epoch)
        pl_module.log("train/disc_collapsed", float(collapsed), on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state, "streak": self.streak, "warned": self.warned}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state, self.streak, self.warned = state_dict["state"], state_dict["streak"], state_dict["warned"]

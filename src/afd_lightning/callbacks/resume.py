"""Bit-exact resume: the random state and the position in the epoch's data travel in every checkpoint.

Exact resume reads one private Lightning attribute, ``FitLoop._data_fetcher`` (the iterator of the
interrupted epoch, to skip the batches already trained on). pyproject.toml pins pytorch-lightning
to the minor range this was tested with, and ``tests/test_rundir_integrity.py::test_lightning_private_data_fetcher_is_where_exact_resume_reads_it``
fails the day the attribute moves.
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch

from afd_lightning.errors import AFDUserError


# --------------------------------------------------------------------------- random state
def capture_rng_state() -> dict[str, Any]:
    """Every global generator a run draws from, as tensors, ints and tuples only.

    Checkpoints are read back with ``torch.load(weights_only=True)``, which refuses numpy
    objects, so numpy's key array travels as an int64 tensor.
    """
    # The global RandomState is always MT19937, whose legacy state is this tuple (numpy's stub also allows a dict).
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, pos, has_gauss, cached = legacy
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


class ResumePositionError(AFDUserError):
    """A checkpoint's mid-epoch position (or random state) does not fit the epoch being resumed."""


def _same_kind(stored: Any, reference: Any) -> bool:
    """Whether ``stored`` has the structure of ``reference`` (tuples, ints, strings, floats, tensors' dtype and shape)."""
    if isinstance(reference, torch.Tensor):
        return isinstance(stored, torch.Tensor) and stored.dtype == reference.dtype and stored.shape == reference.shape
    if isinstance(reference, (tuple, list)):
        return (
            isinstance(stored, (tuple, list))
            and len(stored) == len(reference)
            and all(_same_kind(a, b) for a, b in zip(stored, reference))
        )
    if reference is None or isinstance(reference, float):
        return stored is None or (isinstance(stored, (int, float)) and not isinstance(stored, bool))
    if isinstance(reference, int):
        return isinstance(stored, int) and not isinstance(stored, bool)
    return type(stored) is type(reference)


def check_rng_states(state: Any) -> None:
    """Refuse an ``ExactResume`` state whose random states do not have the layout :func:`capture_rng_state` writes.

    Each would otherwise fail inside ``torch``, numpy or ``random`` with a raw ``ValueError``/``TypeError``. The
    position (``batches_done``) is checked against the epoch when training starts (:meth:`ExactResume.on_train_start`).
    """
    where = "the checkpoint's ExactResume state"
    if not isinstance(state, dict):
        raise ResumePositionError(f"{where} is not a mapping; the file was edited: resume from another checkpoint")
    reference = capture_rng_state()
    for key in ("rng", "epoch_rng"):
        value = state.get(key)
        if key == "epoch_rng" and value is None:
            continue
        if not isinstance(value, dict):
            raise ResumePositionError(f"{where}: {key} is not a random state; the file was edited or damaged")
        for part in ("torch", "numpy", "python"):
            if not _same_kind(value.get(part), reference[part]):
                raise ResumePositionError(
                    f"{where}: {key}.{part} does not have the layout of a {part} random state; the file was edited or "
                    "damaged: resume from another checkpoint or start afresh"
                )
        cuda = value.get("cuda")
        if cuda is not None and not (
            isinstance(cuda, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in cuda)
        ):
            raise ResumePositionError(f"{where}: {key}.cuda is not a list of CUDA random states")


def epoch_iterator(trainer):
    """The running epoch's training-data iterator, from Lightning's private ``FitLoop._data_fetcher``."""
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    iterator = getattr(fetcher, "iterator", None)
    if iterator is None:
        raise RuntimeError(
            "exact resume cannot find the epoch's data iterator (pytorch_lightning FitLoop._data_fetcher.iterator): "
            f"pytorch-lightning {pl.__version__} moved it. afd-lightning is tested with pytorch-lightning 2.6.x "
            "(pip install 'pytorch-lightning>=2.6,<2.7'), or resume from an end-of-epoch checkpoint."
        )
    return iterator


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
        check_rng_states(state_dict)
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
        skip = pending["batches_done"]
        total = trainer.num_training_batches
        if not isinstance(skip, int) or isinstance(skip, bool) or not 0 < skip < total + 1:
            raise ResumePositionError(
                f"the checkpoint's ExactResume state says {skip!r} training batches of epoch {trainer.current_epoch} "
                f"were done, but this epoch has {total} batches: the file was edited or comes from another data "
                "setup, so the run cannot continue where it stopped. Resume from another checkpoint (e.g. the "
                "end-of-epoch last.ckpt) or start afresh."
            )
        iterator = epoch_iterator(trainer)
        for done in range(skip):
            try:
                next(iterator)
            except StopIteration:
                raise ResumePositionError(
                    f"the checkpoint's ExactResume state says {skip} training batches were done, but the data "
                    f"ended after {done}: resume from another checkpoint or start afresh."
                ) from None
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

"""A resume reads the checkpoint it verified, and only state of the shape the resumed run writes.

* :class:`VerifiedCheckpointIO` is the checkpoint reader of every training run's Lightning strategy. A resume
  hands it the checkpoint :class:`~afd_lightning.run.rundir.RunDirectory` read and verified at start (CRCs,
  sizes, shape, recipe), and Lightning gets that dict, in memory: the path is never read a second time, so a
  file swapped after the checks is never trained on. Any other checkpoint Lightning reads (``trainer.test``'s
  best or last checkpoint, Lightning's SLURM ``hpc_ckpt_*.ckpt``) goes through
  :func:`~afd_lightning.store.checkpoint.load_checkpoint`: read once, verified in memory, ``weights_only``.
* :func:`check_resume_state` compares what Lightning will restore (loop progress, callback states, optimizer
  and scheduler states) with the state the run being resumed would write itself, so a value of the wrong
  kind in a part no schema covers ends in one line naming the key, not a ``KeyError``/``TypeError`` from
  inside Lightning or ``torch.optim``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO

from afd_lightning.errors import CheckpointError
from afd_lightning.store.checkpoint import load_checkpoint
from afd_lightning.store.plain import shown


def _key(path) -> str:
    return os.path.realpath(os.fspath(path))


class VerifiedCheckpointIO(CheckpointIO):
    """Lightning's checkpoint reader for a training run: verified reads only, and a resume's verified dict served
    from memory (once). Saving and removing go to the strategy's own checkpoint IO."""

    def __init__(self, inner: CheckpointIO, verified: Mapping[str, dict] | None = None):
        self.inner = inner
        self._verified = {_key(path): checkpoint for path, checkpoint in (verified or {}).items()}

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def remove_checkpoint(self, path) -> None:
        self.inner.remove_checkpoint(path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        """The verified dict of a resume (handed over once), or ``path`` read once and verified in memory."""
        verified = self._verified.pop(_key(path), None)
        return verified if verified is not None else load_checkpoint(Path(path), "cpu")

    def teardown(self) -> None:
        self._verified.clear()
        self.inner.teardown()


def install(trainer, verified: Mapping[str, dict] | None = None) -> VerifiedCheckpointIO:
    """Make :class:`VerifiedCheckpointIO` the checkpoint reader of ``trainer``'s strategy (before ``fit``)."""
    strategy = trainer.strategy
    current = strategy.checkpoint_io
    io = VerifiedCheckpointIO(current.inner if isinstance(current, VerifiedCheckpointIO) else current, verified)
    strategy.checkpoint_io = io
    return io


# --------------------------------------------------------------------------------------------- shapes
def same_shape(stored: Any, reference: Any, key: str, where: str) -> None:
    """Refuse ``stored`` unless it has ``reference``'s shape: its keys (more are allowed), list lengths, and leaf
    kinds (int, float, bool, str, a tensor of the same dtype and shape); a None in the reference takes anything."""
    import torch

    def fail(what: str):
        raise CheckpointError(
            f"{where}: {shown(key)} is {what}; the run being resumed writes {_kind(reference)} there, so the file "
            "was refused (it was edited, or comes from another version or setup)"
        )

    if reference is None:
        return
    if isinstance(reference, Mapping):
        if not isinstance(stored, Mapping):
            fail(_kind(stored))
        for name, value in reference.items():
            if name not in stored:
                fail(f"a mapping without {str(name)[:80]!r}")
            same_shape(stored[name], value, f"{key}.{name}" if key else str(name), where)
    elif isinstance(reference, (list, tuple)):
        if not isinstance(stored, (list, tuple)) or len(stored) != len(reference):
            fail(_kind(stored))
        for i, (a, b) in enumerate(zip(stored, reference)):
            same_shape(a, b, f"{key}[{i}]", where)
    elif torch.is_tensor(reference):
        if not torch.is_tensor(stored) or stored.dtype != reference.dtype or stored.shape != reference.shape:
            fail(_kind(stored))
    elif not _leaf_fits(stored, reference):
        fail(_kind(stored))


def _leaf_fits(stored: Any, reference: Any) -> bool:
    """A bool for a bool, an int for an int, a number for a float, a string for a string; anything else passes."""
    if isinstance(reference, bool):
        return isinstance(stored, bool)
    if isinstance(reference, int):
        return isinstance(stored, int) and not isinstance(stored, bool)
    if isinstance(reference, float):
        return isinstance(stored, (int, float)) and not isinstance(stored, bool)
    if isinstance(reference, str):
        return isinstance(stored, str)
    return True


def _kind(value: Any) -> str:
    import torch

    if torch.is_tensor(value):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _configured(method) -> tuple[list, list]:
    """(optimizers, schedulers) ``method.configure_optimizers()`` makes (every form Lightning accepts)."""
    import torch

    result = method.configure_optimizers()
    optimizers: list = []
    schedulers: list = []

    def add_scheduler(item) -> None:
        schedulers.append(item["scheduler"] if isinstance(item, Mapping) else item)

    def add(item) -> None:
        if isinstance(item, torch.optim.Optimizer):
            optimizers.append(item)
        elif isinstance(item, Mapping):
            optimizers.append(item["optimizer"])
            if item.get("lr_scheduler") is not None:
                add_scheduler(item["lr_scheduler"])
        elif isinstance(item, (list, tuple)):
            if len(item) == 2 and all(isinstance(part, (list, tuple)) for part in item):
                for optimizer in item[0]:
                    add(optimizer)
                for scheduler in item[1]:
                    add_scheduler(scheduler)
            else:
                for part in item:
                    add(part)

    if result is not None:
        add(result)
    return optimizers, schedulers


def _check_optimizer_state(stored: Any, optimizer, key: str, where: str) -> None:
    import torch

    reference = optimizer.state_dict()
    if not isinstance(stored, Mapping) or not isinstance(stored.get("state"), Mapping):
        raise CheckpointError(f"{where}: {key} is not an optimizer state (a mapping with 'state' and 'param_groups')")
    same_shape(
        stored.get("param_groups"),
        [{"params": g["params"]} for g in reference["param_groups"]],
        f"{key}.param_groups",
        where,
    )
    for i, (group, ref) in enumerate(zip(stored["param_groups"], reference["param_groups"])):
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in group["params"]):
            raise CheckpointError(f"{where}: {key}.param_groups[{i}].params holds something other than integers")
        for name, value in ref.items():
            if name != "params" and name in group:
                same_shape(group[name], value, f"{key}.param_groups[{i}].{name}", where)
    shapes = {
        index: param.shape
        for ref, group in zip(reference["param_groups"], optimizer.param_groups)
        for index, param in zip(ref["params"], group["params"])
    }
    for index, state in stored["state"].items():
        if index not in shapes or not isinstance(state, Mapping):
            raise CheckpointError(f"{where}: {key}.state[{str(index)[:40]}] is not the state of one of its parameters")
        for name, value in state.items():
            fits = (torch.is_tensor(value) and (value.dim() == 0 or value.shape == shapes[index])) or isinstance(
                value, (int, float)
            )
            if not fits or isinstance(value, bool):
                raise CheckpointError(
                    f"{where}: {key}.state[{index}].{str(name)[:40]} is {_kind(value)}, not a number or a tensor "
                    f"of its parameter's shape {tuple(shapes[index])}"
                )


def check_resume_state(checkpoint: Mapping, ckpt_path, trainer, method) -> None:
    """Everything Lightning restores on resume, compared with what this trainer and method would write.

    Loop progress (``loops``), the state of each callback this run has (``callbacks``), and, when present,
    one optimizer state per optimizer the method configures (parameter groups of the same sizes, per-parameter
    tensors of their parameter's shape; a checkpoint without them cannot be resumed) and, when present, one
    scheduler state per scheduler. Runs before ``trainer.fit``.
    """
    where = f"ckpt_path={ckpt_path}"
    loops = checkpoint.get("loops")
    if loops is not None:
        reference = {
            name: getattr(trainer, name).state_dict()
            for name in ("fit_loop", "validate_loop", "test_loop", "predict_loop")
        }
        same_shape(loops, reference, "loops", where)
    states = checkpoint.get("callbacks")
    if states is not None:
        if not isinstance(states, Mapping):
            raise CheckpointError(f"{where}: callbacks is {_kind(states)}, not a mapping of callback states")
        for callback in trainer.callbacks:
            if callback.state_key in states:
                same_shape(
                    states[callback.state_key], callback.state_dict(), f"callbacks[{callback.state_key!r}]", where
                )
    optimizer_states = checkpoint.get("optimizer_states")
    scheduler_states = checkpoint.get("lr_schedulers")
    if optimizer_states is None:
        raise CheckpointError(
            f"{where} holds no optimizer states (a weights-only checkpoint, or an export's), so training cannot "
            "continue from it; resume from the run's last.ckpt, or start a new run"
        )
    optimizers, schedulers = _configured(method)
    for key, stored, made in (
        ("optimizer_states", optimizer_states, optimizers),
        ("lr_schedulers", scheduler_states, schedulers),
    ):
        if stored is not None and (not isinstance(stored, list) or len(stored) != len(made)):
            raise CheckpointError(
                f"{where}: {key} is {_kind(stored)}, but this run's method configures {len(made)}; the checkpoint "
                "comes from another method or was edited, so it was refused"
            )
    for i, (stored, optimizer) in enumerate(zip(optimizer_states or [], optimizers)):
        _check_optimizer_state(stored, optimizer, f"optimizer_states[{i}]", where)
    for i, (stored, scheduler) in enumerate(zip(scheduler_states or [], schedulers)):
        same_shape(stored, scheduler.state_dict(), f"lr_schedulers[{i}]", where)

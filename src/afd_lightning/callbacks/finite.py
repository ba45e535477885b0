"""The NaN guard on saving: a checkpoint is never written with NaN/inf weights, and errors name the good ones."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from afd_lightning.errors import AFDUserError


class NonFiniteModelError(AFDUserError, FloatingPointError):
    """The model's parameters or buffers hold NaN/inf when a checkpoint is due: it is not saved."""


def checkpoints_on_disk(trainer) -> list[Path]:
    """The ``.ckpt`` files in the folders this trainer's checkpoint callbacks write to."""
    folders = {Path(cb.dirpath) for cb in getattr(trainer, "checkpoint_callbacks", ()) if getattr(cb, "dirpath", None)}
    folders |= {
        Path(cb.path).parent for cb in getattr(trainer, "callbacks", ()) if isinstance(getattr(cb, "path", None), Path)
    }
    return sorted({p for folder in folders if folder.is_dir() for p in folder.glob("*.ckpt")})


def checkpoint_note(trainer) -> str:
    """One sentence on which checkpoints exist, for errors that stop a run (never claims one that is not there)."""
    files = checkpoints_on_disk(trainer) if trainer is not None else []
    if not files:
        return "No checkpoint was written by this run."
    last = next((p for p in files if p.name == "last.ckpt"), files[-1])
    return (
        f"The checkpoints written before are left as they were ({', '.join(str(p) for p in files)}); "
        f"resume from the last good one with ckpt_path={last}."
    )


def check_finite_model(module: nn.Module, trainer=None) -> None:
    """Refuse to save a model whose parameters or floating-point buffers (BatchNorm statistics) hold NaN/inf."""
    bad = [
        name
        for name, t in (*module.named_parameters(), *module.named_buffers())
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if not bad:
        return
    where = "" if trainer is None else f" at epoch {trainer.current_epoch}, global step {trainer.global_step}"
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise NonFiniteModelError(
        f"the model holds NaN/inf values{where} ({', '.join(bad[:5])}{more}), so the checkpoint due now was not "
        f"saved and the run stopped. {checkpoint_note(trainer)} Lower the learning rate(s) or check the data and "
        "the attack settings."
    )

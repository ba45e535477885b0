"""Checkpoint paths restored on resume stay inside the run's checkpoint directory.

Lightning's ``ModelCheckpoint`` restores ``best_model_path``, ``last_model_path``,
``kth_best_model_path``, ``best_k_models`` and ``dirpath`` from the checkpoint it resumes from, and
later deletes the "previous" best/last file, recursively. It tests that the file lies in its
``dirpath`` without normalising ``..``, so a checkpoint naming ``<run>/checkpoints/../../victim``
would make a resumed run delete a directory outside the run, and ``<run>/checkpoints/..`` the run
directory itself. :class:`CheckpointPathGuard` keeps a restored file path only if it is a ``.ckpt``
file strictly below the run's checkpoint directory once ``..`` and links are resolved (and
``dirpath`` only if it is that directory); every other path is dropped, with a warning, before any
callback reads its state. ``train.build`` adds it to every trainer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

FILE_KEYS = ("best_model_path", "last_model_path", "kth_best_model_path")
PATH_KEYS = (*FILE_KEYS, "dirpath")


def _resolved(path: Any) -> Path | None:
    if not isinstance(path, str) or not path or "://" in path or "\0" in path:
        return None
    try:
        return Path(os.path.normpath(os.path.abspath(path))).resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def inside(path: Any, checkpoint_dir: Path) -> bool:
    """Whether ``path`` is a ``.ckpt`` file strictly below ``checkpoint_dir`` (``..`` normalised, links followed)."""
    resolved = _resolved(path)
    return resolved is not None and resolved.suffix == ".ckpt" and checkpoint_dir in resolved.parents


def sanitize_callback_state(state: dict, checkpoint_dir: Path) -> list[str]:
    """Drops the paths in one callback's state that are not this run's checkpoint files; returns them."""
    dropped: list[str] = []
    kth_dropped = False
    for key in PATH_KEYS:
        value = state.get(key)
        keep = _resolved(value) == checkpoint_dir if key == "dirpath" else inside(value, checkpoint_dir)
        if value and not keep:
            dropped.append(str(value))
            state[key] = ""
            kth_dropped = kth_dropped or key == "kth_best_model_path"
    top_k = state.get("best_k_models")
    if isinstance(top_k, dict):
        outside = [str(p) for p in top_k if not inside(p, checkpoint_dir)]
        dropped += outside
        if outside or kth_dropped:
            # A partial top-k list would leave Lightning's kth bookkeeping inconsistent: start it afresh
            # (the files inside the run directory stay on disk, they are just no longer rotated).
            state["best_k_models"], state["kth_best_model_path"] = {}, ""
            state.pop("kth_value", None)
    elif top_k is not None:
        dropped.append(f"best_k_models={type(top_k).__name__}")
        state["best_k_models"] = {}
    return dropped


class CheckpointPathGuard(pl.Callback):
    """On resume, keeps only ``.ckpt`` paths below the run's checkpoint directory in the restored callback states.

    ``checkpoint_dir`` defaults to ``<run_dir>/checkpoints`` (where conf/train/callbacks/default.yaml writes).
    """

    def __init__(self, run_dir: str | Path, checkpoint_dir: str | Path | None = None):
        self.run_dir = Path(run_dir).resolve()
        self.checkpoint_dir = Path(checkpoint_dir).resolve() if checkpoint_dir else self.run_dir / "checkpoints"
        self.dropped: list[str] = []

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Lightning calls every callback's on_load_checkpoint before any callback's load_state_dict.
        dropped: list[str] = []
        for state in (checkpoint.get("callbacks") or {}).values():
            if isinstance(state, dict):
                dropped += sanitize_callback_state(state, self.checkpoint_dir)
        self.dropped = sorted(set(dropped))
        if self.dropped:
            more = f" and {len(self.dropped) - 4} more" if len(self.dropped) > 4 else ""
            rank_zero_warn(
                f"resuming in {self.run_dir}: ignored the checkpoint path(s) "
                f"{', '.join(map(repr, self.dropped[:4]))}{more} from the checkpoint's callback state, as they are "
                f"not .ckpt files in this run's checkpoint directory {self.checkpoint_dir} (Lightning would track them "
                "as this run's files and could delete them later). This run's checkpoints go to its own directory."
            )

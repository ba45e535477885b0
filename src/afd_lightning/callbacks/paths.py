"""Checkpoint paths restored on resume stay inside the run directory.

Lightning's ``ModelCheckpoint`` restores ``best_model_path``, ``last_model_path``,
``kth_best_model_path``, ``best_k_models`` and ``dirpath`` from the checkpoint it resumes from, and
later deletes the "previous" best/last file, recursively. It tests that the file lies in its
``dirpath`` without normalising ``..``, so a checkpoint naming ``<run>/checkpoints/../../victim``
would make a resumed run delete a directory outside the run. :class:`CheckpointPathGuard` drops
every such path (normalised with ``Path.resolve``) that is not inside the run directory, with a
warning, before any callback reads its state. ``train.build`` adds it to every trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

PATH_KEYS = ("best_model_path", "last_model_path", "kth_best_model_path", "dirpath")


def inside(path: Any, run_dir: Path) -> bool:
    """Whether ``path`` is a local path that, resolved (``..`` and links followed), lies in ``run_dir``."""
    if not isinstance(path, str) or "://" in path:
        return False
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return resolved == run_dir or run_dir in resolved.parents


def sanitize_callback_state(state: dict, run_dir: Path) -> list[str]:
    """Drops the paths in one callback's state that lie outside ``run_dir``; returns the paths dropped."""
    dropped: list[str] = []
    kth_dropped = False
    for key in PATH_KEYS:
        value = state.get(key)
        if value and not inside(value, run_dir):
            dropped.append(str(value))
            state[key] = ""
            kth_dropped = kth_dropped or key == "kth_best_model_path"
    top_k = state.get("best_k_models")
    if isinstance(top_k, dict):
        outside = [str(p) for p in top_k if not inside(p, run_dir)]
        dropped += outside
        if outside or kth_dropped:
            # A partial top-k list would leave Lightning's kth bookkeeping inconsistent: start it afresh
            # (the files inside the run directory stay on disk, they are just no longer rotated).
            state["best_k_models"], state["kth_best_model_path"] = {}, ""
            state.pop("kth_value", None)
    return dropped


class CheckpointPathGuard(pl.Callback):
    """On resume, keeps only checkpoint paths inside ``run_dir`` in the restored callback states (see module doc)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir).resolve()
        self.dropped: list[str] = []

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Lightning calls every callback's on_load_checkpoint before any callback's load_state_dict.
        dropped: list[str] = []
        for state in (checkpoint.get("callbacks") or {}).values():
            if isinstance(state, dict):
                dropped += sanitize_callback_state(state, self.run_dir)
        self.dropped = sorted(set(dropped))
        if self.dropped:
            more = f" and {len(self.dropped) - 4} more" if len(self.dropped) > 4 else ""
            rank_zero_warn(
                f"resuming in {self.run_dir}: ignored the checkpoint path(s) {', '.join(map(repr, self.dropped[:4]))}{more} "
                "from the checkpoint's callback state, as they lie outside this run directory (Lightning would track "
                "them as this run's files and could delete them later). This run's checkpoints go to its own directory."
            )

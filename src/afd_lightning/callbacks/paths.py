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
TOP_K_KEYS = ("best_k_models", "kth_best_model_path", "kth_value")


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
    """Drops the paths in one callback's state that lie outside ``run_dir``; returns what was dropped."""
    dropped: list[str] = []
    for key in PATH_KEYS:
        value = state.get(key)
        if value and not inside(value, run_dir):
            dropped.append(f"{key}={value!r}")
            state[key] = ""
    top_k = state.get("best_k_models")
    if isinstance(top_k, dict):
        outside = [p for p in top_k if not inside(p, run_dir)]
        dropped += [f"best_k_models[{p!r}]" for p in outside]
        if outside or any(d.startswith("kth_best_model_path=") for d in dropped):
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
        for name, state in (checkpoint.get("callbacks") or {}).items():
            if not isinstance(state, dict):
                continue
            dropped = sanitize_callback_state(state, self.run_dir)
            if dropped:
                self.dropped += [f"{name}: {d}" for d in dropped]
        if self.dropped:
            rank_zero_warn(
                f"ignored {len(self.dropped)} checkpoint path(s) in the resumed checkpoint's callback state that lie "
                f"outside this run directory {self.run_dir} (Lightning would track and later delete them): "
                + "; ".join(self.dropped)
            )

"""OmegaConf resolvers used by the configs (registered when afd_lightning is imported)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from omegaconf import OmegaConf


def _choice(group: str) -> str:
    """The option chosen for a config group in this Hydra run (``unset`` outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "unset"
    return str(HydraConfig.get().runtime.choices.get(group, "unset"))


def _path_safe(text) -> str:
    """``text`` as one file name: runs of anything but letters, digits and ``._+-`` become ``-``.

    Multirun subdirectories are named with it, so their paths contain no ``=`` or ``,`` (which Hydra's
    override parser would reject in ``eval.py ckpt_path=[...]``) and no ``/``.
    """
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-")[:150]


def cpu_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _parallel_jobs(threads) -> int:
    """Sweep points run at once so that jobs x threads <= cores (``threads=auto`` counts as 1 thread a job)."""
    per_job = 1 if str(threads) == "auto" else max(1, int(threads))
    return max(1, cpu_cores() // per_job)


def _eval_dir(ckpt_path, log_dir, attack, suite, stamp) -> str:
    """Where eval.py writes: ``<run dir>/eval/<suite or attack>-<date>`` for one checkpoint of a training run
    (``<run dir>/checkpoints/<file>.ckpt``), else ``<log_dir>/eval/<date>`` (several checkpoints, a loose file)."""
    from pathlib import Path

    paths = list(ckpt_path) if isinstance(ckpt_path, (list, tuple)) or OmegaConf.is_list(ckpt_path) else [ckpt_path]
    if len(paths) == 1 and isinstance(paths[0], str) and not Path(paths[0]).is_dir():
        ckpt = Path(paths[0])
        if ckpt.parent.name == "checkpoints":
            name = attack if attack not in (None, "None", "null") else suite
            return str(ckpt.parent.parent / "eval" / f"{_path_safe(name or 'eval')}-{stamp}")
    return str(Path(str(log_dir)) / "eval" / str(stamp))


def register() -> None:
    resolvers: dict[str, Callable[..., Any]] = {
        "afd.mul": lambda a, b: float(a) * float(b),
        "afd.div": lambda a, b: float(a) / float(b),
        "afd.choice": _choice,
        "afd.path_safe": _path_safe,
        "afd.parallel_jobs": _parallel_jobs,
        "afd.eval_dir": _eval_dir,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)

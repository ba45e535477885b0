"""The ``threads`` config key: torch's intra-op CPU threads for this process (set first by both entry points)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from afd_lightning.errors import ConfigError

log = logging.getLogger(__name__)


def positive_count(setting, key: str, meaning: str) -> int:
    """A count setting given as a positive integer (or its string); a ConfigError naming ``key`` otherwise."""
    try:
        n = int(setting)
    except (TypeError, ValueError):
        n = 0
    if isinstance(setting, bool) or n < 1 or str(n) != str(setting).strip():
        raise ConfigError(f"{key}={setting!r} must be auto or a positive integer ({meaning})")
    return n


# Datasets whose networks are too small for a second torch thread to pay (docs/performance.md: a digits AFD
# run took 16.2 s on one thread and 17.4 s on two on an idle 2-core machine, and 1.9x longer on two beside a
# busy process).
SMALL_FAMILIES = ("digits", "mnist")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def omp_limit() -> int | None:
    """``OMP_NUM_THREADS`` as a positive integer, or None when unset or not one."""
    import os

    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def is_small_job(dataset: Mapping | None) -> bool:
    """Whether the job's network is a digits/MNIST-sized one (its dataset's ``meta.family``, or 1x28x28 or smaller)."""
    meta = (dataset or {}).get("meta") if isinstance(dataset, Mapping) else None
    if not isinstance(meta, Mapping):
        return False
    if meta.get("family") in SMALL_FAMILIES or meta.get("name") in SMALL_FAMILIES:
        return True
    size, channels = meta.get("image_size"), meta.get("channels")
    return isinstance(size, int) and isinstance(channels, int) and channels == 1 and size <= 28


def auto_threads(dataset: Mapping | None = None) -> tuple[int, str]:
    """``(count, why)`` for ``threads=auto``: a function of the job and the machine only, never of the load.

    ``OMP_NUM_THREADS`` when set; 1 for a digits/MNIST-sized network (:func:`is_small_job`); otherwise the
    cores this process may use. The same command therefore trains with the same count, and gives the same
    numbers, whether the machine is quiet or busy when it starts.
    """
    omp = omp_limit()
    if omp is not None:
        return omp, f"OMP_NUM_THREADS={omp}"
    if is_small_job(dataset):
        return 1, "a digits/MNIST-sized network, where a second thread is no faster"
    cores = available_cores()
    return cores, f"the {cores} cores this process may use"


def set_threads(setting: int | str = "auto", dataset: Mapping | None = None) -> int:
    """Set torch's intra-op CPU threads for this process from the ``threads`` config key; returns the number.

    * a positive integer: that many threads;
    * ``auto``: :func:`auto_threads` for the job's ``dataset`` config (never the machine's load at start-up,
      so the same command gives the same numbers on a quiet and on a busy machine). The choice is logged.
    """
    import torch

    if setting != "auto":
        n = positive_count(setting, "threads", "torch CPU threads")
        torch.set_num_threads(n)
        log.info("threads: %d (set)", n)
        return n
    n, why = auto_threads(dataset)
    torch.set_num_threads(n)
    log.info("threads: %d (auto: %s)", n, why)
    return n


def bounded_stored_threads(stored: int) -> tuple[int, str | None]:
    """A thread count read from a checkpoint is a hint: at most the available cores and ``OMP_NUM_THREADS``.

    Returns ``(count, note)``; ``note`` says why the stored count was not used (None when it was).
    """
    limit = min(available_cores(), omp_limit() or available_cores())
    if stored <= limit:
        return stored, None
    return limit, f"the checkpoint's {stored} is more than the {limit} this process may use"

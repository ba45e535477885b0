"""The ``threads`` config key: torch's intra-op CPU threads for this process (set first by both entry points)."""

from __future__ import annotations

import logging
from pathlib import Path

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


def set_threads(setting: int | str = "auto") -> int:
    """Set torch's intra-op CPU threads for this process from the ``threads`` config key; returns the number.

    * a positive integer: that many threads;
    * ``auto``: torch's current count (its default: the cores, or an earlier ``torch.set_num_threads``)
      minus the cores other processes were using over 0.2 s (read from /proc/stat), rounded, at
      least 1. An idle machine keeps every core; a busy neighbour on a 2-core machine leaves 1
      (thread barriers on shared cores cost more than the second thread gives: docs/performance.md).
      ``OMP_NUM_THREADS``, when set, wins. Without /proc, torch's default stays. The choice is logged.
    """
    import os
    import resource
    import time

    import torch

    if setting != "auto":
        n = positive_count(setting, "threads", "torch CPU threads")
        torch.set_num_threads(n)
        log.info("threads: %d (set)", n)
        return n
    if os.environ.get("OMP_NUM_THREADS"):
        log.info("threads: %d (auto: OMP_NUM_THREADS=%s)", torch.get_num_threads(), os.environ["OMP_NUM_THREADS"])
        return torch.get_num_threads()
    cores = torch.get_num_threads()

    def busy_s() -> tuple[float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = resource.getrusage(resource.RUSAGE_SELF)
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK"), own.ru_utime + own.ru_stime

    try:
        (machine0, own0), t0 = busy_s(), time.perf_counter()
        time.sleep(0.2)
        (machine1, own1), wall = busy_s(), time.perf_counter() - t0
    except (OSError, ValueError, IndexError):
        log.info("threads: %d (auto: torch's default; no /proc/stat to read the load from)", torch.get_num_threads())
        return torch.get_num_threads()
    others = max(0.0, (machine1 - machine0) - (own1 - own0)) / wall
    n = max(1, min(cores, round(cores - others)))
    torch.set_num_threads(n)
    log.info("threads: %d (auto: %d cores, other processes using %.1f of them)", n, cores, others)
    return n

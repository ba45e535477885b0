"""An evaluation spread over processes on a CPU (``eval.py workers=...``): one job per (model, attack) pair.

Each curve in :func:`afd_lightning.evaluation.suite.evaluate_models` depends on nothing another curve did:
every attack reseeds from ``(seed, attack name)`` before its curve (:func:`~afd_lightning.evaluation.sweep.attack_seed`),
the analyses seed themselves, and the checks read only finished curves. So each (model, attack) curve, and each
model's embedding analyses, can run in its own process (started with ``spawn``: no thread pool inherited from
this process) and give the numbers it gives in the sequential loop, as long as the thread count is the same
(tests/evaluation/test_parallel.py compares the two with ``threads=1``). The checks, the worst case and the
tables are then computed here, from the same curves, in the suite's attack order.

A digits model gains almost nothing from a second torch thread (docs/performance.md), so on a 2-core CPU two
attacks at once, one thread each, take about half the wall time of one after another with two threads.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import torch

from afd_lightning.process.threads import positive_count

log = logging.getLogger(__name__)

# Longest jobs first (a greedy schedule's best order): the attacks that cost the most per sample on the paper's
# suites (docs/performance.md profiles them), then the analyses (t-SNE), then everything else in suite order.
HEAVY_FIRST = ("autoattack", "spsa", "cw", "boundary", "pgd_linf_strong", "apgd_ce", "square")
ANALYSES_RANK = len(HEAVY_FIRST)


def plan_workers(setting, n_jobs: int, threads) -> int:
    """Processes for ``n_jobs`` independent jobs: ``auto`` = min(jobs, cores // threads), threads=auto counting as 1."""
    from afd_lightning.config.resolvers import _parallel_jobs

    if setting == "auto":
        return max(1, min(n_jobs, _parallel_jobs(threads)))
    return max(1, min(positive_count(setting, "workers", "processes the evaluation runs in"), n_jobs))


def _worker_init() -> None:
    """Runs in each worker before it unpickles a job: attacks hold advertorch classes, whose import needs the shim."""
    from afd_lightning.process.compat import advertorch

    advertorch()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` fresh processes (``spawn``) ready to unpickle evaluation jobs."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )


@dataclass
class Job:
    """One unit of work: ``fn(*args)`` run in a worker with ``threads`` torch threads; ``key`` names its result."""

    key: tuple[str, str | None]  # (model, attack name); attack None: the model's analyses
    fn: Callable[..., Any]
    args: tuple
    rank: int  # lower runs earlier


def job_rank(attack_name: str) -> int:
    """Where an attack's job goes in the queue (HEAVY_FIRST order, then the rest)."""
    return HEAVY_FIRST.index(attack_name) if attack_name in HEAVY_FIRST else ANALYSES_RANK + 1


def _run(threads: int, fn: Callable[..., Any], args: tuple):
    torch.set_num_threads(threads)
    return fn(*args)


def run_jobs(jobs: Sequence[Job], workers: int, threads: int, on_done: Callable[[Job, Any], None]) -> None:
    """Run ``jobs`` in ``workers`` processes, longest first (stable in the given order otherwise).

    ``on_done(job, result)`` is called in this process as each job finishes. An error in a job is raised here,
    with the worker's traceback; the jobs not yet started are cancelled.
    """
    ordered = sorted(jobs, key=lambda j: j.rank)  # sorted() is stable: suite order within a rank
    with worker_pool(workers) as pool:
        futures = {pool.submit(_run, threads, job.fn, job.args): job for job in ordered}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    on_done(futures[future], future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise

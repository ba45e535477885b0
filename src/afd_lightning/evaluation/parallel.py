"""An evaluation spread over processes on a CPU (``eval.py workers=...``): one job per (model, attack) pair.

Each curve in :func:`afd_lightning.evaluation.suite.evaluate_models` depends on nothing another curve did:
every attack reseeds from ``(seed, attack name)`` before its curve (:func:`~afd_lightning.evaluation.sweep.attack_seed`),
the analyses seed themselves, and the checks read only finished curves. So each (model, attack) curve, and each
model's embedding analyses, can run in its own process (forked from a fresh fork server, or started with ``spawn``: no
thread pool inherited from this process; :func:`start_method`) and give the numbers it gives in the sequential loop, as long as the thread count is the same
(tests/evaluation/test_parallel.py compares the two with ``threads=1``). The checks, the worst case and the
tables are then computed here, from the same curves, in the suite's attack order.

A digits model gains almost nothing from a second torch thread (docs/performance.md), so on a 2-core CPU two
attacks at once, one thread each, take about half the wall time of one after another with two threads.

One curve can be split too. An attack whose samples do not interact (``independent_samples``: AutoAttack and its
parts, APGD and Square, :mod:`~afd_lightning.evaluation.attacks.autoattack`) runs over fixed image shards of
``shard_size`` samples, each shard its own job, and the curve is the shards' curves side by side
(:func:`join_curves`). The shards depend on ``shard_size`` and the sample order only, and each shard's seed on
its first sample's index (:func:`shard_seed`), so the per-sample results are the same whatever the number of
workers, one included: ``workers=1`` runs the same shards one after another.
"""

from __future__ import annotations

import logging
import multiprocessing
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import torch

from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.sweep import Curve
from afd_lightning.process.threads import positive_count

log = logging.getLogger(__name__)

# Longest jobs first (a greedy schedule's best order): the attacks that cost the most per sample on the paper's
# suites (docs/performance.md profiles them), then the analyses (t-SNE), then everything else in suite order.
HEAVY_FIRST = ("autoattack", "spsa", "cw", "boundary", "pgd_linf_strong", "apgd_ce", "square")
ANALYSES_RANK = len(HEAVY_FIRST)

# Images per shard of a per-sample attack on a CPU (shard_size=auto): ten shards of the 500-image MNIST-10k
# AutoAttack evaluation keep two to ten workers evenly busy, and a shard still fills a batch of the small nets.
CPU_SHARD_SIZE = 50


def plan_workers(setting, n_jobs: int, threads) -> int:
    """Processes for ``n_jobs`` independent jobs: ``auto`` = min(jobs, cores // threads), threads=auto counting as 1."""
    from afd_lightning.config.resolvers import _parallel_jobs

    if setting == "auto":
        return max(1, min(n_jobs, _parallel_jobs(threads)))
    return max(1, min(positive_count(setting, "workers", "processes the evaluation runs in"), n_jobs))


def plan_shard_size(setting, device_type: str) -> int | None:
    """Images per shard (``eval.py shard_size=...``): ``auto`` = CPU_SHARD_SIZE on a CPU and None (whole batches,
    one job per curve) on an accelerator, where one process feeds the device; None/``null``: no shards; N >= 1."""
    if setting == "auto":
        return CPU_SHARD_SIZE if device_type == "cpu" else None
    if setting is None:
        return None
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(
            f"shard_size={setting!r} must be a positive integer (images per shard of AutoAttack, APGD and Square), "
            "null (no shards) or auto"
        )
    return setting


def shard_ranges(attack, n: int, shard_size: int | None) -> list[tuple[int, int]]:
    """The ``[start, stop)`` sample ranges ``attack``'s curve runs over: fixed shards of ``shard_size`` for an
    attack with ``independent_samples``, else one range of all ``n`` (after the attack's own ``n_samples``)."""
    if attack.n_samples is not None:
        n = min(n, attack.n_samples)
    if not shard_size or not getattr(attack, "independent_samples", False) or n <= shard_size:
        return [(0, n)]
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def shard_seed(seed: int, start: int) -> int:
    """The seed of the shard that starts at sample ``start``: the evaluation's own for the first (so a curve of one
    shard is the unsharded curve), then one per start index, whichever worker runs it."""
    return int(seed) if start == 0 else zlib.crc32(f"{int(seed)}/{start}".encode())


def join_curves(parts: Sequence[Curve]) -> Curve:
    """One curve from the curves of consecutive shards: per-sample results side by side, costs summed.

    A shard whose samples were never attacked has no AutoAttack stage rows; none of its samples is robust there.
    """
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    stage_names = list(dict.fromkeys(k for p in parts for k in p.stages))
    robust = torch.cat([p.robust for p in parts], 1)
    return Curve(
        first.attack,
        first.norm,
        list(first.eps),
        robust,
        torch.arange(robust.shape[1]),
        None if first.min_norms is None else torch.cat([p.min_norms for p in parts if p.min_norms is not None]),
        [sum(column) for column in zip(*(p.attacked for p in parts))],
        seconds=sum(p.seconds for p in parts),
        mode=first.mode,
        info=dict(first.info),
        stages={k: torch.cat([p.stages.get(k, torch.zeros_like(p.robust)) for p in parts], 1) for k in stage_names},
    )


def count_jobs(n_models: int, attacks: Sequence, n_samples: int, shard_size: int | None, extra: int) -> int:
    """The jobs of an evaluation: every model's attack shards, plus ``extra`` per model (transfer curves, analyses)."""
    return n_models * (sum(len(shard_ranges(a, n_samples, shard_size)) for a in attacks) + extra)


def _worker_init() -> None:
    """Runs in each worker before it unpickles a job: attacks hold advertorch classes, whose import needs the shim."""
    from afd_lightning.process.compat import advertorch

    advertorch()


# What a worker imports before its first job (the advertorch shim first), imported once by the fork server.
PRELOAD = ["afd_lightning.evaluation.parallel_preload"]


def start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn``.

    Both give a worker no thread pool or CUDA state of this process. The fork server is a fresh interpreter that
    imports :data:`PRELOAD` once and forks each worker from there, so a worker starts in a fraction of a second
    instead of importing torch, advertorch and torchvision again (about 6 s of CPU each; more with every pool when
    one process evaluates several times, as the tests do).
    """
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` fresh processes (:func:`start_method`) ready to unpickle evaluation jobs."""
    context = multiprocessing.get_context(start_method())
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(PRELOAD)  # read when the server starts: once per process
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init)


@dataclass
class Job:
    """One unit of work: ``fn(*args)`` run in a worker with ``threads`` torch threads; ``key`` names its result."""

    key: tuple[str, str | None, int]  # (model, attack name, first sample of the shard); attack None: analyses
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

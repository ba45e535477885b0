"""Several checkpoints evaluated at once, one process per checkpoint (``eval.py workers=...``).

Each model's evaluation in :func:`afd_lightning.evaluation.suite.evaluate_models` depends on nothing another
model did: every attack reseeds from ``(seed, attack name)`` before its curve, the analyses seed themselves,
and the checks read only that model's curves. So each model can run in its own process (started with
``spawn``: no thread pool inherited from this process) and give the numbers it gives in the sequential loop,
as long as the thread count is the same (tests/evaluation/test_parallel.py compares the two with
``threads=1``). The side-by-side tables, checks and results.json are written afterwards from the same
:class:`~afd_lightning.evaluation.suite.ModelResult` objects as before.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch
from torch import nn

from afd_lightning.evaluation.attacks.base import EvalAttack
from afd_lightning.threads import positive_count

log = logging.getLogger(__name__)


def plan_workers(setting, n_models: int, threads) -> int:
    """Processes to evaluate ``n_models`` with: ``auto`` = min(models, cores // threads), threads=auto counting as 1."""
    from afd_lightning.resolvers import _parallel_jobs

    if setting == "auto":
        return max(1, min(n_models, _parallel_jobs(threads)))
    return min(positive_count(setting, "workers", "checkpoints evaluated at once"), n_models)


def _worker_init() -> None:
    """Runs in each worker before it unpickles a job: attacks hold advertorch classes, whose import needs the shim."""
    from afd_lightning.compat import advertorch

    advertorch()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` fresh processes (``spawn``) ready to unpickle evaluation jobs."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )


def _one_model(name, model, x, y, attacks, threads: int, kwargs):
    torch.set_num_threads(threads)
    from afd_lightning.evaluation.suite import evaluate_models

    return evaluate_models({name: model}, x, y, attacks, **kwargs)[name]


def evaluate_models_parallel(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[EvalAttack],
    *,
    workers: int,
    threads: int = 1,
    natural: Sequence[str] = (),
    on_model_done: Callable | None = None,
    **kwargs,
):
    """:func:`~afd_lightning.evaluation.suite.evaluate_models`, one process per model, ``workers`` at once.

    ``threads``: torch threads in each process. ``on_model_done(results)`` is called as each model finishes
    (results so far, in the order of ``models``). Returns the results in the order of ``models``.
    """
    kwargs = {**kwargs, "progress": False, "on_attack_done": None}
    done: dict = {}
    with worker_pool(workers) as pool:
        futures = {
            pool.submit(
                _one_model,
                name,
                model.cpu(),
                x.cpu(),
                y.cpu(),
                list(attacks),
                threads,
                {**kwargs, "natural": [name] if name in natural else []},
            ): name
            for name, model in models.items()
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                name = futures[future]
                done[name] = future.result()  # an error in a worker is raised here, with its traceback
                log.info("%s: evaluated in its own process (%.1fs)", name, done[name].seconds)
                if on_model_done is not None:
                    on_model_done({k: done[k] for k in models if k in done})
    return {k: done[k] for k in models}

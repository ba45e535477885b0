"""The parallel sweep launcher (conf/train/hydra/launcher/local_parallel.yaml) changes the wall time, not the numbers.

A 2-point digits sweep of one tiny epoch, run by Hydra's basic launcher (one point after the other) and by
the joblib launcher (both points at once, one process each), with ``threads=1`` pinned: every value of every
``metrics.json`` and every weight of every ``last.ckpt`` must be identical.

Both sweeps are forked from the tests' zygote (``helpers.zygote``: no 9 s of imports); the joblib launcher's loky
workers are fresh interpreters either way. (The zygote's child runs ``threading``'s exit hooks before ``atexit``, as
the interpreter does: loky stops its workers in one, and without it the joblib sweep hung after its jobs.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import afd_lightning  # noqa: F401  (registers the config resolvers)
from afd_lightning.config.resolvers import _parallel_jobs, cpu_cores

from helpers import zygote

REPO = Path(__file__).resolve().parents[2]
SWEEP = [
    "seed=0,1",
    "threads=1",
    "logger=csv",
    "trainer.max_epochs=1",
    # 2 steps: a launcher that changed the seeding, the data order or the thread count would change the weights at
    # the first step already; the second step also compares the random state carried from one step to the next.
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "dataset.meta.train_attack_steps=2",
    "dataset.meta.eval_attack_steps=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def _sweep(launcher: str, out: Path) -> dict[str, tuple[dict, dict]]:
    cmd = [sys.executable, "train.py", "-m", f"hydra/launcher={launcher}", *SWEEP, f"hydra.sweep.dir={out}"]
    if launcher == "local_parallel":
        cmd.append("hydra.launcher.n_jobs=2")  # two at once even on a 1-core CI runner: the point is isolation
    proc = zygote.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{launcher} sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    runs = {}
    for metrics in sorted(out.glob("*/metrics.json")):
        # the metric values (paths, provenance and wall times differ between the two sweeps by design)
        values = {k: v for k, v in json.loads(metrics.read_text()).items() if isinstance(v, (int, float))}
        state = torch.load(metrics.parent / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        runs[metrics.parent.name.split("_", 1)[0]] = (values, state["state_dict"])
    return runs


@pytest.mark.slow
def test_parallel_sweep_gives_the_sequential_numbers(tmp_path):
    sequential = _sweep("basic", tmp_path / "basic")
    parallel = _sweep("local_parallel", tmp_path / "parallel")
    assert sorted(sequential) == sorted(parallel) == ["0", "1"], (sorted(sequential), sorted(parallel))
    for job, (values, weights) in sequential.items():
        p_values, p_weights = parallel[job]
        assert values and values == p_values, f"job {job}: metrics.json differ: {values} vs {p_values}"
        assert weights.keys() == p_weights.keys()
        for key, tensor in weights.items():
            assert torch.equal(tensor, p_weights[key]), f"job {job}: weight {key} differs between launchers"
    # the two seeds really are different runs (the comparison above is not between copies of one run)
    assert any(not torch.equal(sequential["0"][1][k], sequential["1"][1][k]) for k in sequential["0"][1])


def test_parallel_jobs_keep_jobs_times_threads_within_the_cores():
    cores = cpu_cores()
    assert _parallel_jobs(1) == cores
    assert _parallel_jobs("auto") == cores
    assert _parallel_jobs(cores) == 1
    assert _parallel_jobs(cores + 1) == 1  # never 0 jobs
    for threads in range(1, cores + 1):
        assert _parallel_jobs(threads) * threads <= cores

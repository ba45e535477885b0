"""AutoAttack over image shards: one worker process against two, same per-sample results.

Runs ``eval.py suite=autoattack`` on one checkpoint twice, each as its own process inside a
:class:`machine_load.LoadWatch`, with the same image shards (``shard_size=auto``: 50 images per job on a CPU)
and one torch thread per process:

* ``workers=1``: the shards one after another in one process;
* ``workers=2``: the shards spread over two worker processes.

Each shard has its own seed (derived from the evaluation seed and the shard's first image), so the result does
not depend on the number of workers: the script checks that both runs give the same robust/broken flag for
every sample at every ε, and writes the wall times and their ratio::

    .venv/bin/python benchmarks/bench_autoattack_shards.py --ckpt runs/m10k/afd_s0/checkpoints/last.ckpt \\
        --n-samples 500 --out benchmarks/results/autoattack_shards.json

Run it on a quiet machine with at least two cores: a figure taken beside other work is flagged BUSY.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine_load  # noqa: E402
import results_file  # noqa: E402

from afd_lightning.evaluation.report.schema import EvaluationResults
from afd_lightning.evaluation.report.tables import markdown_table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def per_sample(results: EvaluationResults) -> dict[str, str | None]:
    """``{model: the AutoAttack curve's per-sample record}`` (one base-36 digit per sample: robust through k eps)."""
    return {name: m.attacks["autoattack"].robust_through for name, m in results.models.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="the checkpoint to attack (an MNIST-10k one for the issue)")
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "autoattack_shards.json"))
    parser.add_argument("--keep-dir", default=None, help="write the two evaluations to KEEP_DIR/workers1 and /workers2")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    work = Path(args.keep_dir) if args.keep_dir else Path(tempfile.mkdtemp(prefix="afd-bench-aa-shards-"))
    runs: dict[str, dict] = {}
    records: dict[str, dict] = {}
    for workers in (1, 2):
        name = f"workers={workers}"
        out_dir = work / name.replace("=", "")
        cmd = [
            sys.executable,
            "eval.py",
            f"ckpt_path={args.ckpt}",
            "suite=autoattack",
            f"n_samples={args.n_samples}",
            f"seed={args.seed}",
            "threads=1",
            f"workers={workers}",
            "progress=false",
            "plots=false",
            f"output_dir={out_dir}",
        ]
        print(f"{name}: {shlex.join(cmd[1:])}", flush=True)
        with machine_load.LoadWatch(own_threads=workers) as watch:
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        results = EvaluationResults.load(out_dir / "results.json")
        records[name] = per_sample(results)
        (model,) = results.models.values()
        aa = model.attacks["autoattack"]
        runs[name] = {
            "command": "python " + shlex.join(cmd[1:-1]),
            "wall_s": watch.report["wall_s"],
            "recorded_s": results.seconds,
            "eps": aa.eps,
            "accuracy": aa.accuracy,
            "load": watch.report,
        }
        flag = "  BUSY: " + "; ".join(watch.report["busy_reasons"]) if watch.report["busy"] else ""
        print(f"{name}: {watch.report['wall_s']:.1f} s wall{flag}", flush=True)
    one, two = runs["workers=1"], runs["workers=2"]
    same = records["workers=1"] == records["workers=2"] and all(v is not None for v in records["workers=1"].values())
    busy = any(r["load"]["busy"] for r in runs.values())
    speedup = one["wall_s"] / two["wall_s"]
    command = "python benchmarks/bench_autoattack_shards.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"# AutoAttack over image shards: one worker against two ({cores} cores)",
        "",
        f"`{command}`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; checkpoint `{args.ckpt}`; {args.n_samples} test images, seed {args.seed}, "
        "one torch thread per process, shard_size=auto."
        + (" BUSY: other work ran beside it; measure again." if busy else ""),
        "",
        markdown_table(
            ["run", "wall s", "AA accuracy (%) per eps", "busy"],
            [
                [
                    n,
                    f"{r['wall_s']:.1f}",
                    ", ".join(f"{100 * v:.1f}" for v in r["accuracy"]),
                    "BUSY" if r["load"]["busy"] else "no",
                ]
                for n, r in runs.items()
            ],
        ),
        "",
        f"speed-up of two workers: **{speedup:.2f}x**; the same robust/broken flag for every sample at every eps: "
        f"**{'yes' if same else 'NO'}**",
    ]
    record = {
        "cores": cores,
        "checkpoint": args.ckpt,
        "n_samples": args.n_samples,
        "speedup": round(speedup, 3),
        "same_per_sample": same,
        "busy": busy,
        "runs": runs,
    }
    results_file.write(args.out, record, lines)
    if not same:
        raise SystemExit("the per-sample results differ between workers=1 and workers=2: a bug in the sharding")


if __name__ == "__main__":
    main()

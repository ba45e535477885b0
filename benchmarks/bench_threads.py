"""Wall time of a digits AFD training job and a quick evaluation for each CPU-thread choice, idle and beside a busy neighbour.

    python benchmarks/bench_threads.py                     # quiet machine; writes benchmarks/results/threads_cpu.{json,md}
    python benchmarks/bench_threads.py --epochs 2 --out /tmp/threads.json

Settings (columns): ``threads=1``; ``threads=<all cores>`` (torch's default); the same with
``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning); ``threads=auto`` (the
default, threads.set_threads: what it chose is read from the run's log). Loads (rows): ``idle``, and
``busy neighbour``: this script starts one process spinning on one core (``python -c "while True:
pass"``) and stops it by its PID afterwards. Jobs: ``python train.py`` (AFD on digits, ``--epochs``
epochs, no test) and ``python eval.py suite=quick`` on the checkpoint of a first, untimed training run.
``OMP_NUM_THREADS`` is removed from every job's environment (it would override the setting).

Each run's machine load is recorded (benchmarks/machine_load.py): an ``idle`` figure taken beside
other work is flagged BUSY and must be measured again; ``busy neighbour`` figures are expected to show
about one core of other work, and are flagged when there was more.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402
from machine_load import LoadWatch  # noqa: E402

from afd_lightning.evaluation.report.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]
LOADS = ("idle", "busy neighbour")


def settings(cores: int) -> dict[str, tuple[dict, str]]:
    return {
        "threads=1": ({}, "1"),
        f"threads={cores} (torch default)": ({}, str(cores)),
        f"threads={cores} + OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, str(cores)),
        "threads=auto": ({}, "auto"),
    }


def train_cmd(epochs: int, out: Path, threads: str) -> list[str]:
    return [
        sys.executable,
        "train.py",
        f"trainer.max_epochs={epochs}",
        "logger=csv",
        "test_after_fit=false",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"paths.output_dir={out}",
        f"threads={threads}",
    ]


def eval_cmd(ckpt: Path, out: Path, threads: str) -> list[str]:
    return [
        sys.executable,
        "eval.py",
        f"ckpt_path={ckpt}",
        "suite=quick",
        "plots=false",
        "progress=false",
        f"output_dir={out}",
        f"threads={threads}",
        "workers=1",  # one process: this benchmark measures torch threads (docs/performance.md times the workers)
    ]


def run(cmd: list[str], env_extra: dict, own_threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env_extra
    t0 = time.perf_counter()
    with LoadWatch(own_threads=own_threads) as watch:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0 - 2 * watch.sample_s  # the two load samples are not the job's
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    chosen = re.search(r"threads: (\d+) \(", proc.stdout + proc.stderr)
    return {
        "seconds": round(seconds, 2),
        "threads_used": int(chosen.group(1)) if chosen else None,
        "load": watch.report,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the digits AFD job")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "threads_cpu.json"))
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="afd-threads-"))
    print(f"setup: training the checkpoint the evaluations use ({work})", flush=True)
    run(train_cmd(args.epochs, work / "setup", "auto"), {}, cores)
    ckpt = work / "setup" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"the setup run wrote no {ckpt}")

    results = []
    for load in LOADS:
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
        try:
            for name, (env_extra, threads) in settings(cores).items():
                for job in ("digits AFD training", "quick evaluation"):
                    out = work / f"{len(results)}"
                    cmd = (
                        train_cmd(args.epochs, out, threads)
                        if job.startswith("digits")
                        else eval_cmd(ckpt, out, threads)
                    )
                    r = run(cmd, env_extra, cores if threads == "auto" else int(threads))
                    others = r["load"]["others_cores"]
                    expected = 0.0 if neighbour is None else 1.0
                    r["valid"] = others is not None and others <= expected + 0.15
                    # run()'s own "load" (the LoadWatch report) is kept as "machine_load": "load" names the scenario
                    measured = {k: v for k, v in r.items() if k != "load"}
                    results.append({**measured, "machine_load": r["load"], "load": load, "setting": name, "job": job})
                    print(
                        f"{load:<15} {name:<42} {job:<20} {r['seconds']:8.1f} s  threads {r['threads_used']}"
                        f"  others {others} cores{'' if r['valid'] else '  BUSY: measure again'}",
                        flush=True,
                    )
        finally:
            if neighbour is not None:
                neighbour.terminate()
                neighbour.wait()

    names = list(dict.fromkeys(r["setting"] for r in results))  # the settings as measured, in order
    lines = [
        f"# CPU threads: wall time (s) on {cores} cores",
        "",
        "`python benchmarks/bench_threads.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; digits AFD {args.epochs} epochs (no test); eval.py suite=quick. "
        "BUSY: other work beyond the planned neighbour; measure again.",
        "",
    ]
    table = []
    for job in ("digits AFD training", "quick evaluation"):
        for load in LOADS:
            cells = []
            for name in names:
                r = next(x for x in results if x["job"] == job and x["load"] == load and x["setting"] == name)
                auto = f" ({r['threads_used']})" if name == "threads=auto" else ""
                cells.append(f"{r['seconds']:.1f}{auto}{'' if r['valid'] else ' BUSY'}")
            table.append([job, load, *cells])
    lines.append(markdown_table(["job", "load", *names], table))
    results_file.write(args.out, {"cores": cores, "epochs": args.epochs, "results": results}, lines)


if __name__ == "__main__":
    main()

"""``eval.py`` with its defaults (the paper suite) on one checkpoint: one process against the worker processes.

Runs ``eval.py ckpt_path=CKPT progress=false`` twice, each as its own process inside a
:class:`machine_load.LoadWatch`, and times the whole command (start-up included):

* baseline -- ``workers=1``: every attack one after another in one process with ``threads=auto`` (what
  ``eval.py`` did before the (model, attack) jobs of ``afd_lightning.evaluation.parallel``);
* default -- no override: ``workers=auto``, cores // threads processes, one thread each.

It then compares the two ``results.json`` attack by attack (accuracy at every eps, and the samples whose
result differs: the thread counts differ, so CPU kernels may sum in another order) and writes the wall times,
their ratio, each attack's seconds and accuracies::

    .venv/bin/python benchmarks/bench_eval_default.py --ckpt logs/bench/afd/checkpoints/last.ckpt

writes benchmarks/results/eval_default.json and .md (``make bench`` runs it on the ``make train`` checkpoint,
trained with ``threads=1``). Run it on a quiet machine: a figure taken beside other work is flagged BUSY.
"""

from __future__ import annotations

import argparse
import json
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

from afd_lightning.evaluation.report.tables import markdown_table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def attack_rows(results: dict) -> dict[str, dict]:
    """Per attack of the (single) model: label, eps, accuracy and seconds."""
    (model,) = results["models"].values()
    return {
        name: {"label": c["label"], "eps": c["eps"], "accuracy": c["accuracy"], "seconds": c["seconds"]}
        for name, c in model["attacks"].items()
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a digits checkpoint (make bench: the make train one)")
    parser.add_argument("--out", default=str(RESULTS / "eval_default.json"))
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="afd-bench-eval-default-"))
    runs: dict[str, dict] = {}
    for name, extra in (("one process (workers=1)", ["workers=1"]), ("default (workers=auto)", [])):
        out_dir = work / ("baseline" if extra else "default")
        cmd = [sys.executable, "eval.py", f"ckpt_path={args.ckpt}", "progress=false", *extra, f"output_dir={out_dir}"]
        print(f"{name}: {shlex.join(cmd[1:])}", flush=True)
        with machine_load.LoadWatch(own_threads=cores) as watch:
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        results = json.loads((out_dir / "results.json").read_text())
        runs[name] = {
            "command": "python " + shlex.join(cmd[1:-1]),
            "wall_s": watch.report["wall_s"],
            "recorded_s": results["seconds"],
            "attacks": attack_rows(results),
            "load": watch.report,
        }
        flag = "  BUSY: " + "; ".join(watch.report["busy_reasons"]) if watch.report["busy"] else ""
        print(f"{name}: {watch.report['wall_s']:.1f} s wall{flag}", flush=True)
    base, new = runs.values()
    same = {a: base["attacks"][a]["accuracy"] == r["accuracy"] for a, r in new["attacks"].items()}
    busy = any(r["load"]["busy"] for r in runs.values())
    command = "python benchmarks/bench_eval_default.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"# eval.py with its defaults: one process vs worker processes ({cores} cores)",
        "",
        f"`{command}`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; checkpoint `{args.ckpt}`; the paper suite on the whole digits test split."
        + (" BUSY: other work ran beside it; measure again." if busy else ""),
        "",
        markdown_table(
            ["run", "wall s", "busy"],
            [[n, f"{r['wall_s']:.1f}", "BUSY" if r["load"]["busy"] else "no"] for n, r in runs.items()],
        ),
        "",
        f"speed-up of the default: **{base['wall_s'] / new['wall_s']:.2f}x**",
        "",
        markdown_table(
            ["attack", "s, one process", "s, in a worker", "accuracy (%) per eps, one process", "same in the workers"],
            [
                [
                    r["label"],
                    f"{base['attacks'][a]['seconds']:.1f}",
                    f"{r['seconds']:.1f}",
                    ", ".join(f"{100 * v:.1f}" for v in base["attacks"][a]["accuracy"]),
                    "yes" if same[a] else ", ".join(f"{100 * v:.1f}" for v in r["accuracy"]),
                ]
                for a, r in new["attacks"].items()
            ],
        ),
    ]
    record = {
        "cores": cores,
        "checkpoint": args.ckpt,
        "speedup": round(base["wall_s"] / new["wall_s"], 3),
        "same_accuracy": same,
        "busy": busy,
        "runs": runs,
    }
    results_file.write(args.out, record, lines)


if __name__ == "__main__":
    main()

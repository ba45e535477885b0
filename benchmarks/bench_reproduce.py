"""``make reproduce`` one after another against in parallel: wall time of both, and the same numbers.

Runs the Makefile's ``reproduce`` target twice on the same presets, seeds and suites:

* sequential -- ``REPRO_LAUNCHER=basic REPRO_JOBS=1`` (Hydra's basic launcher, one evaluation at a time);
* parallel -- the default (``hydra/launcher=local_parallel``, ``REPRO_JOBS`` = cores // ``REPRO_THREADS``
  training runs and evaluations at once);

each inside a :class:`machine_load.LoadWatch`, then requires the two ``summary.json`` files to hold the same
rows (every mean and std) and writes the wall times, their ratio and the load records::

    .venv/bin/python benchmarks/bench_reproduce.py --presets paper_digits_at,paper_digits_afd --seeds 0,1 --suites quick --args ''

writes benchmarks/results/reproduce_parallel.json and .md (the committed run, `make bench`: AT and AFD, two seeds,
the presets' full 30 epochs, the quick suite: 4 runs, about 7 minutes on 2 cores, so that the two jobs at a time
have equal work). The defaults (``--args trainer.max_epochs=5``) are a quicker check; with runs that short,
process start-up (imports, Hydra) is a sizeable share of each job and the ratio understates what full-length runs
gain. ``--presets '' --seeds 0,1,2 --suites 'quick autoattack' --args ''`` is the whole ``make reproduce`` (hours).
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


def make_reproduce(out: Path, common: list[str], sequential: bool) -> list[str]:
    mode = ["REPRO_LAUNCHER=basic", "REPRO_JOBS=1"] if sequential else []
    return ["make", "--no-print-directory", "reproduce", *mode, f"REPRO_DIR={out}", *common]


def rows_of(summary: Path) -> list[dict]:
    """summary.json's rows: recipe, seeds and every column's values (run folders and provenance differ)."""
    rows = json.loads(summary.read_text())["rows"]
    return [{k: row[k] for k in ("recipe", "seeds", "columns")} for row in rows]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--presets", default="paper_digits_at,paper_digits_afd", help="REPRO_PRESETS ('': the Makefile's five)"
    )
    parser.add_argument("--seeds", default="0,1", help="REPRO_SEEDS")
    parser.add_argument("--suites", default="quick", help="REPRO_SUITES")
    parser.add_argument("--args", default="trainer.max_epochs=5", help="REPRO_ARGS (training overrides)")
    parser.add_argument("--out", default=str(RESULTS / "reproduce_parallel.json"))
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    common = [f"REPRO_SEEDS={args.seeds}", f"REPRO_SUITES={args.suites}", f"REPRO_ARGS={args.args}"]
    if args.presets:
        common.append(f"REPRO_PRESETS={args.presets}")
    work = Path(tempfile.mkdtemp(prefix="afd-bench-reproduce-"))
    results = {}
    for name, sequential in (("sequential", True), ("parallel", False)):
        cmd = make_reproduce(work / name, common, sequential)
        print(f"{name}: {shlex.join(cmd)}", flush=True)
        with machine_load.LoadWatch(own_threads=1 if sequential else cores) as watch:
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"{name} make reproduce failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        results[name] = {"command": shlex.join(cmd), "seconds": watch.report["wall_s"], "load": watch.report}
        print(
            f"{name}: {watch.report['wall_s']:.1f} s{'  BUSY: ' + '; '.join(watch.report['busy_reasons']) if watch.report['busy'] else ''}",
            flush=True,
        )
    same = rows_of(work / "sequential" / "summary.json") == rows_of(work / "parallel" / "summary.json")
    if not same:
        raise SystemExit(
            f"the two summaries differ: compare {work}/sequential/summary.md and {work}/parallel/summary.md"
        )
    seq, par = results["sequential"]["seconds"], results["parallel"]["seconds"]
    busy = any(r["load"]["busy"] for r in results.values())
    command = "python benchmarks/bench_reproduce.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"# make reproduce: one after another vs in parallel ({cores} cores)",
        "",
        f"`{command}`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; REPRO_SEEDS={args.seeds}, REPRO_SUITES={args.suites}, "
        f"REPRO_ARGS={args.args or '(none)'}; identical summary.json rows: {'yes' if same else 'no'}."
        + (" BUSY: other work ran beside it; measure again." if busy else ""),
        "",
        markdown_table(
            ["launcher", "wall s", "busy"],
            [[n, f"{r['seconds']:.1f}", "BUSY" if r["load"]["busy"] else "no"] for n, r in results.items()],
        ),
        "",
        f"parallel / sequential speed-up: **{seq / par:.2f}x**",
    ]
    record = {"cores": cores, "speedup": round(seq / par, 3), "same_summary": same, "busy": busy, "results": results}
    results_file.write(args.out, record, lines)


if __name__ == "__main__":
    main()

"""Time the paper's attack suite on one checkpoint, the naive way and the fast way, in one run.

naive: every eps attacks every clean-correct sample afresh (``sweep_mode=independent``), and each
       minimum-norm attack (DDN, C&W, DeepFool, Boundary) is rerun once per eps;
fast:  survivors-only sweeps, one run per minimum-norm attack (the default of eval.py).

Both see the same samples and seeds.  The fast curve must equal the running minimum of the naive
per-sample results for deterministic attacks (FGSM, DDN, C&W, DeepFool): checked and recorded.

    .venv/bin/python benchmarks/bench_eval.py --ckpt /tmp/afd_ckpt/checkpoints/last.ckpt
writes benchmarks/results/eval_speed.json and eval_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_setup import load_eval  # noqa: E402

from afd_lightning.evaluation.loading import build_attacks, versions  # noqa: E402
from afd_lightning.evaluation.suite import SuiteSettings, SweepSettings, evaluate_models  # noqa: E402

DETERMINISTIC = ("fgsm", "ddn", "cw", "deepfool")
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--suite", default="paper")
    p.add_argument("--n-samples", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "eval_speed"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg, lm, meta, x, y = load_eval(args.ckpt, args.n_samples, f"suite={args.suite}")
    timings, curves = {}, {}
    for mode in ("independent", "survivors"):
        attacks, _ = build_attacks(cfg)
        start = time.perf_counter()
        settings = SuiteSettings(table_eps=meta["eps"], sweep=SweepSettings(mode=mode, seed=0))
        res = evaluate_models({"model": lm.model}, x, y, attacks, settings)["model"]
        timings[mode] = time.perf_counter() - start
        curves[mode] = res.curves
        print(f"{mode}: {timings[mode]:.1f}s", flush=True)
    per_attack = {}
    for name, fast in curves["survivors"].items():
        slow = curves["independent"][name]
        running = torch.cummin(slow.robust.int(), dim=0).values.bool()
        per_attack[name] = {
            "eps": fast.eps,
            "fast_accuracy": fast.accuracy,
            "naive_accuracy": slow.accuracy,
            "naive_running_min_accuracy": [float(r.float().mean()) for r in running],
            "identical_to_running_min": bool(torch.equal(fast.robust, running)),
            "deterministic": name in DETERMINISTIC,
            "fast_seconds": round(fast.seconds, 2),
            "naive_seconds": round(slow.seconds, 2),
            "fast_attacked": fast.attacked,
            "naive_attacked": slow.attacked,
        }
    result = {
        "checkpoint": args.ckpt,
        "dataset": meta["name"],
        "n_samples": len(y),
        "suite": args.suite,
        "naive_seconds": round(timings["independent"], 1),
        "fast_seconds": round(timings["survivors"], 1),
        "speedup": round(timings["independent"] / timings["survivors"], 2),
        "deterministic_identical": all(
            v["identical_to_running_min"] for k, v in per_attack.items() if v["deterministic"]
        ),
        "attacks": per_attack,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": "cpu",
        },
        "versions": versions(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from afd_lightning.run import provenance  # commit, versions, threads, device, command, wall time

    result["provenance"] = provenance.collect(device="cpu", wall_s=provenance.process_seconds()).to_json()
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    from afd_lightning.evaluation.report.tables import markdown_table

    rows = markdown_table(
        ["attack", "naive s", "fast s", "samples attacked (naive)", "(fast)", "fast == running min of naive"],
        [
            [
                k,
                f"{v['naive_seconds']:.1f}",
                f"{v['fast_seconds']:.1f}",
                sum(v["naive_attacked"]),
                sum(v["fast_attacked"]),
                ("yes" if v["identical_to_running_min"] else "no") + (" (deterministic)" if v["deterministic"] else ""),
            ]
            for k, v in per_attack.items()
        ],
    )
    out.with_suffix(".md").write_text(
        f"# Evaluation speed: naive per-eps vs survivors + min-norm\n\n"
        f"`{result['command']}`\n\n"
        f"{meta['name']}, {len(y)} test samples, suite `{args.suite}`, CPU ({os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads; shared machine), {platform.platform()}\n"
        f"torch {result['versions']['torch']}, advertorch {result['versions']['advertorch']}, foolbox "
        f"{result['versions']['foolbox']}, pyautoattack {result['versions']['pyautoattack']}\n\n"
        f"**naive {result['naive_seconds']} s, fast {result['fast_seconds']} s: {result['speedup']}x faster**; "
        f"deterministic attacks identical: {result['deterministic_identical']}\n\n" + rows + "\n\n"
        "Random attacks (PGD/MIM random start, SPSA, Boundary) draw different noise in the two runs, so\n"
        "their per-sample results may differ by chance; the deterministic ones must match exactly.\n"
    )
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

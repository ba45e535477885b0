"""Per-attack wall time and accuracy of the evaluation's costly attacks, the old code path against the new one.

Each attack runs through the sweep eval.py uses (survivors, the attack's own seed) on the same samples,
``--repeats`` times each, old and new interleaved; the table gives the median wall time and the accuracy
each leaves at every eps (identical across repeats: every run is seeded). A cheaper attack must leave the
same or a lower accuracy (tests/evaluation/attacks/test_spsa.py checks it on a tiny model).

* spsa -- old: advertorch's ``LinfSPSAAttack`` (``NormBallAttack``, as conf/eval/attack/spsa.yaml was);
  new: :class:`afd_lightning.evaluation.attacks.SPSA` with the same budget (``early_stop`` on).

    .venv/bin/python benchmarks/bench_eval_attacks.py --ckpt /tmp/h3_train/checkpoints/last.ckpt --threads 1
writes benchmarks/results/eval_attacks.json and eval_attacks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine_load  # noqa: E402
from eval_setup import load_eval  # noqa: E402

from afd_lightning.evaluation.attacks import SPSA, NormBallAttack  # noqa: E402
from afd_lightning.evaluation.loading import build_attacks  # noqa: E402
from afd_lightning.evaluation.sweep import predict, run_curve  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def old_spsa(new: SPSA) -> NormBallAttack:
    """The attack conf/eval/attack/spsa.yaml built before: advertorch's LinfSPSAAttack with the same budget."""
    return NormBallAttack(
        new.name,
        new.norm,
        new.eps,
        "advertorch.attacks.LinfSPSAAttack",
        steps=new.steps,
        delta=new.delta,
        lr=new.lr,
        nb_sample=new.nb_sample,
        max_batch_size=new.max_batch_size,
        gradient_free=True,
        auc_table=False,
    )


OLD = {"spsa": old_spsa}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--attacks", default=",".join(OLD), help=f"comma-separated, from {', '.join(OLD)}")
    p.add_argument("--n-samples", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "eval_attacks"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg, lm, meta, x, y = load_eval(args.ckpt, args.n_samples)
    built = {a.name: a for a in build_attacks(cfg)[0]}
    model = lm.model.float().eval()
    correct = predict(model, x, 500) == y
    rows = {}
    watch = machine_load.LoadWatch(own_threads=args.threads)
    with watch:
        for name in args.attacks.split(","):
            new = built[name]
            variants = {"old": OLD[name](new), "new": new}
            seconds = {k: [] for k in variants}
            accuracy = {}
            for _ in range(args.repeats):
                for key, attack in variants.items():
                    start = time.perf_counter()
                    curve = run_curve(model, attack, x, y, correct, seed=0)
                    seconds[key].append(time.perf_counter() - start)
                    accuracy[key] = curve.accuracy
            rows[name] = {
                "eps": list(new.eps),
                **{f"{k}_seconds": [round(s, 2) for s in v] for k, v in seconds.items()},
                **{f"{k}_median_s": round(statistics.median(v), 2) for k, v in seconds.items()},
                **{f"{k}_accuracy": accuracy[k] for k in variants},
                "not_weaker": all(n <= o + 1e-12 for n, o in zip(accuracy["new"], accuracy["old"])),
            }
            print(name, json.dumps(rows[name]), flush=True)
    busy, reasons = watch.report["busy"], watch.report["busy_reasons"]
    from afd_lightning import provenance  # commit, versions, threads, device, command, wall time

    result = {
        "checkpoint": args.ckpt,
        "dataset": meta["name"],
        "n_samples": len(y),
        "threads": args.threads,
        "repeats": args.repeats,
        "busy": busy,
        "busy_reasons": reasons,
        "load": watch.report,
        "attacks": rows,
        "command": " ".join(["python", *sys.argv]),
        "provenance": provenance.collect(device="cpu", wall_s=provenance.process_seconds()).to_json(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = "\n".join(
        f"| {k} | {v['old_median_s']:.1f} | {v['new_median_s']:.1f} | "
        f"{', '.join(f'{100 * a:.1f}' for a in v['old_accuracy'])} | {', '.join(f'{100 * a:.1f}' for a in v['new_accuracy'])} | "
        f"{'yes' if v['not_weaker'] else '**NO**'} |"
        for k, v in rows.items()
    )
    flag = f"**BUSY machine** ({'; '.join(reasons)}): times are not quiet-machine figures" if busy else "quiet machine"
    out.with_suffix(".md").write_text(
        f"# Evaluation attacks: old code path vs new\n\n`{result['command']}`\n\n"
        f"{meta['name']}, {len(y)} test samples (seed 0), {args.threads} torch thread(s), median of "
        f"{args.repeats} runs each; {flag}.\n\n"
        "| attack | old s | new s | old accuracy (%) per eps | new accuracy (%) per eps | new <= old |\n"
        "|---|---|---|---|---|---|\n" + table + "\n"
    )
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

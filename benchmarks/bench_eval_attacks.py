"""Per-attack wall time and accuracy of the evaluation's costly attacks, the old code path against the new one.

Each attack runs through the sweep eval.py uses (survivors, the attack's own seed) on the same samples,
``--repeats`` times each, old and new interleaved; the table gives the median wall time and the accuracy
each leaves at every eps (identical across repeats: every run is seeded). A cheaper attack must leave the
same or a lower accuracy, on every sample (tests/evaluation/attacks/test_spsa.py and test_boundary.py check it on
tiny models; the last column here checks it per sample and eps).

* spsa -- old: advertorch's ``LinfSPSAAttack`` (``NormBallAttack``, as conf/eval/attack/spsa.yaml was);
  new: :class:`afd_lightning.evaluation.attacks.SPSA` with the same budget (``early_stop`` on).
* boundary -- old: foolbox's ``BoundaryAttack`` (:class:`FoolboxBoundary` with ``early_stop=false``, as
  conf/eval/attack/boundary.yaml was); new: the same steps and draws with each sample stopped once its example is
  within the smallest eps > 0 (``early_stop`` on). For a minimum-norm attack the row also counts the samples whose
  norm differs above that eps (0 expected: those samples follow foolbox's path) and gives both median norms.
* cw -- no cheaper path (docs/performance.md says why): timed as configured, for the budget of the whole
  evaluation ("old" left empty).

    .venv/bin/python benchmarks/bench_eval_attacks.py --ckpt /tmp/h3_train/checkpoints/last.ckpt --threads 1
writes benchmarks/results/eval_attacks.json and eval_attacks.md (``--attacks boundary`` for a subset).
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

from afd_lightning.evaluation.attacks import SPSA, FoolboxBoundary, NormBallAttack  # noqa: E402
from afd_lightning.evaluation.loading import build_attacks  # noqa: E402
from afd_lightning.evaluation.sweep import Curve, predict, run_curve  # noqa: E402

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


def old_boundary(new: FoolboxBoundary) -> FoolboxBoundary:
    """The attack conf/eval/attack/boundary.yaml built before: foolbox's BoundaryAttack, same start and steps."""
    return FoolboxBoundary(
        new.name,
        new.eps,
        norm=new.norm,
        init_steps=new.init_steps,
        n_samples=new.n_samples,
        early_stop=False,
        **new.kwargs,
    )


OLD = {"spsa": old_spsa, "boundary": old_boundary}
TIMED = (*OLD, "cw")  # cw: the configured attack alone


def compare(old: Curve, new: Curve) -> dict:
    """Per-sample comparison: pairs (eps, sample) robust under new but not old (must be 0); for minimum-norm
    curves, the median norms and the samples whose norm differs above the smallest eps > 0."""
    out: dict = {"robust_only_new": int((new.robust & ~old.robust).sum())}
    if old.min_norms is not None and new.min_norms is not None:
        positive = [e for e in new.eps if e > 0]
        stop = min(positive) if positive else 0.0
        above = (old.min_norms > stop) | (new.min_norms > stop)
        out["norms_differ_above_stop"] = int((above & (old.min_norms != new.min_norms)).sum())
        for key, curve in (("old", old), ("new", new)):
            out[f"{key}_median_min_norm"] = curve.to_record().median_min_norm
    return out


def _seconds(row: dict, key: str) -> str:
    return f"{row[f'{key}_median_s']:.1f}" if f"{key}_median_s" in row else "-"


def _accuracy(row: dict, key: str) -> str:
    return ", ".join(f"{100 * a:.1f}" for a in row[f"{key}_accuracy"]) if f"{key}_accuracy" in row else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--attacks", default=",".join(TIMED), help=f"comma-separated, from {', '.join(TIMED)}")
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
            variants = {"old": OLD[name](new), "new": new} if name in OLD else {"new": new}
            seconds = {k: [] for k in variants}
            curves: dict[str, Curve] = {}
            for _ in range(args.repeats):
                for key, attack in variants.items():
                    start = time.perf_counter()
                    curves[key] = run_curve(model, attack, x, y, correct, seed=0)
                    seconds[key].append(time.perf_counter() - start)
            accuracy = {k: c.accuracy for k, c in curves.items()}
            rows[name] = {
                "eps": list(new.eps),
                **{f"{k}_seconds": [round(s, 2) for s in v] for k, v in seconds.items()},
                **{f"{k}_median_s": round(statistics.median(v), 2) for k, v in seconds.items()},
                **{f"{k}_accuracy": accuracy[k] for k in variants},
            }
            if "old" in curves:
                rows[name].update(compare(curves["old"], curves["new"]))
                rows[name]["not_weaker"] = rows[name]["robust_only_new"] == 0 and all(
                    n <= o + 1e-12 for n, o in zip(accuracy["new"], accuracy["old"])
                )
            print(name, json.dumps(rows[name]), flush=True)
    busy, reasons = watch.report["busy"], watch.report["busy_reasons"]
    from afd_lightning.run import provenance  # commit, versions, threads, device, command, wall time

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
    from afd_lightning.evaluation.report.tables import markdown_table
    from afd_lightning.files.escape import Markdown

    table = markdown_table(
        ["attack", "old s", "new s", "old accuracy (%) per eps", "new accuracy (%) per eps", "new <= old, each sample"],
        [
            [
                k,
                _seconds(v, "old"),
                _seconds(v, "new"),
                _accuracy(v, "old"),
                _accuracy(v, "new"),
                Markdown("unchanged" if "not_weaker" not in v else "yes" if v["not_weaker"] else "**NO**"),
            ]
            for k, v in rows.items()
        ],
    )
    flag = f"**BUSY machine** ({'; '.join(reasons)}): times are not quiet-machine figures" if busy else "quiet machine"
    notes = "".join(
        f"\n{k}: median minimum norm {v['old_median_min_norm']} (old), {v['new_median_min_norm']} (new); "
        f"{v['norms_differ_above_stop']} sample(s) whose norm differs above the smallest eps > 0.\n"
        for k, v in rows.items()
        if "old_median_min_norm" in v
    )
    out.with_suffix(".md").write_text(
        f"# Evaluation attacks: old code path vs new\n\n`{result['command']}`\n\n"
        f"{meta['name']}, {len(y)} test samples (seed 0), {args.threads} torch thread(s), median of "
        f"{args.repeats} runs each; {flag}.\n\n" + table + "\n" + notes
    )
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

"""Training-step speed of nt, at, trades and afd, through Lightning and through a plain PyTorch loop.

Each (model, method, loop) runs in its own subprocess, so peak memory is that configuration's
own (peak RSS on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU).  The plain loop does
exactly the math of the LightningModule's ``training_step`` on the same model, attack and
optimizers, without the Trainer, so ``lightning - plain`` is Lightning's fixed cost per batch.

    python benchmarks/bench_train_step.py --models digits --methods afd --steps 40 --warmup 5
    python benchmarks/bench_train_step.py --models cifar_resnet18 --methods at,afd --steps 5
    python benchmarks/bench_train_step.py --models digits --methods afd --profile   # where the time goes
    python benchmarks/bench_train_step.py --precision bf16-mixed --channels-last     # GPU variants

Every figure is the median over the timed batches (after ``--warmup``), with the quartiles and
min/max beside it.  The machine's load is recorded before, during and after each configuration
(benchmarks/machine_load.py); figures taken on a busy machine are flagged BUSY in the table and
``"busy": true`` in the JSON, with the reasons.  ``--repeats R`` runs every configuration R times,
interleaved, and pools their timed batches.  Writes ``--out`` (default
benchmarks/results/train_step_<device>.json) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_load import LoadWatch

from afd_lightning.evaluation.report.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # name: (config overrides, batch size)
    "digits": (["dataset=digits"], 50),
    "cifar_resnet18": (["dataset=cifar10", "model=resnet18"], 64),
}
METHODS = ("nt", "at", "trades", "afd")


# ----------------------------------------------------------------------------- one configuration
def build_method(case: str, method: str, attack_steps: int, channels_last: bool, compile_: bool):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import afd_lightning  # noqa: F401
    from afd_lightning.config.paths import config_dir
    from afd_lightning.nets.build import build_model

    overrides, batch = CASES[case]
    overrides = [
        *overrides,
        f"method={method}",
        f"dataset.meta.train_attack_steps={attack_steps}",
        f"model.channels_last={str(channels_last).lower()}",
        f"model.compile={str(compile_).lower()}",
        "paths.output_dir=/tmp/afd-bench",
    ]
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    model = build_model(cfg.model)
    shape = (batch, cfg.dataset.meta.channels, cfg.dataset.meta.image_size, cfg.dataset.meta.image_size)
    module = instantiate(cfg.method, model=model, attack=instantiate(cfg.attack), eval_attack=None)
    return module, shape, cfg.dataset.meta.num_classes


def plain_step_fn(module, optimizers):
    """The LightningModule's own math (``AFD.algorithm1``, the baselines' ``training_losses``) with plain
    ``backward()``/``step()`` calls instead of Lightning's: no second copy of any method's losses."""
    import torch

    from afd_lightning.methods import AFD

    model = module.model

    def update(opt, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if isinstance(module, AFD):

        def step(x, y):
            out = module.algorithm1(x, y, lambda i, loss: update(optimizers[i], loss))
            with torch.no_grad():
                return (model.classifier(out["z_adv"].detach()).argmax(1) == y).float().mean()

    elif hasattr(module, "training_losses"):
        (opt,) = optimizers

        def step(x, y):
            out = module.training_losses(x, y)
            update(opt, out["loss"])
            logits = out.get("logits_adv", out.get("logits"))
            return (logits.argmax(1) == y).float().mean()

    else:
        raise SystemExit(f"no plain loop for {type(module).__name__}")
    return step


# ----------------------------------------------------------------------------- profile of the timed batches
# Self time (cProfile tottime) by where the code lives, and a few cumulative figures.
_PACKAGES = (
    (
        "lightning (pytorch_lightning, fabric, utilities)",
        ("pytorch_lightning", "lightning_fabric", "lightning_utilities"),
    ),
    ("torchmetrics", ("torchmetrics",)),
    ("afd_lightning (our code)", ("afd_lightning",)),
    ("advertorch", ("advertorch",)),
    ("torch python", ("torch",)),
)
_CUMULATIVE = {  # label: (path fragment, function name)
    "training_step (our method)": ("afd_lightning/methods/", "training_step"),
    "attack": ("afd_lightning/attacks/factory.py", "__call__"),
    "self.log": ("pytorch_lightning/core/module.py", "log"),
    "torchmetrics Metric.forward": ("torchmetrics/metric.py", "forward"),
    "manual_backward": ("pytorch_lightning/core/module.py", "manual_backward"),
    "LightningOptimizer.step": ("pytorch_lightning/core/optimizer.py", "step"),
    "autograd engine (all backward passes)": ("", "run_backward"),
}


def profile_breakdown(stats, steps: int) -> dict:
    """ms per timed batch: self time by package (C/C++ ops separately) and cumulative time of named calls."""
    by_package: dict[str, float] = {}
    cumulative = dict.fromkeys(_CUMULATIVE, 0.0)
    for (path, _line, func), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():
        where = "torch ops and other C code" if path == "~" else "other python"
        for label, names in _PACKAGES:
            if any(f"/{n}/" in path for n in names):
                where = label
                break
        by_package[where] = by_package.get(where, 0.0) + tottime
        for label, (fragment, name) in _CUMULATIVE.items():
            if (func == name and fragment in path) or (
                name == "run_backward" and func.startswith("<method 'run_backward'")
            ):
                cumulative[label] += cumtime
    per = 1000.0 / steps
    return {
        "self_ms_by_package": {k: round(v * per, 3) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])},
        "cumulative_ms": {k: round(v * per, 3) for k, v in cumulative.items() if v},
        "note": "under cProfile, which inflates Python-heavy code; compare shares, not absolute ms",
    }


# ----------------------------------------------------------------------------- one forward, one backward
def pass_times(args) -> dict:
    """ms of one encoder+classifier forward, a backward into the weights (training) and one into the input
    only (the attack: eval mode, parameters frozen), and the afd/at floor they imply for a K-step attack:
    AT = K(f + b_x) + f + b_w; AFD adds one F+B (step 1), two forwards (step 2) and one F+B (step 3) to it."""
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F

    from afd_lightning.attacks import attack_mode

    torch.set_num_threads(args.threads)
    pl.seed_everything(0)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    module, shape, num_classes = build_method(args.case, "at", args.attack_steps, args.channels_last, args.compile)
    model = module.model.to(device).train()
    x, y = torch.rand(shape, device=device), torch.randint(0, num_classes, (shape[0],), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {"forward": [], "backward_weights": [], "backward_input": []}

    def timed(key, fn):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times[key].append(time.perf_counter() - t0)
        return out

    for i in range(args.warmup + args.steps):
        loss = timed("forward", lambda: F.cross_entropy(model(x), y))
        timed("backward_weights", loss.backward)
        model.zero_grad(set_to_none=True)
        with attack_mode(model):
            xg = x.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xg), y)
            timed("backward_input", lambda loss=loss, xg=xg: torch.autograd.grad(loss, xg))
        if i < args.warmup:
            for v in times.values():
                v.clear()
    f, bw, bx = (1000 * statistics.median(times[k]) for k in ("forward", "backward_weights", "backward_input"))
    k = args.attack_steps
    at, afd = k * (f + bx) + f + bw, k * (f + bx) + 2 * (f + bw) + 2 * f
    return {
        "case": args.case,
        "device": device,
        "batch": shape[0],
        "steps_timed": args.steps,
        "forward_ms": f,
        "backward_weights_ms": bw,
        "backward_input_ms": bx,
        "attack_steps": k,
        "afd_over_at_floor": afd / at,
    }


# ----------------------------------------------------------------------------- one configuration
def run_one(args) -> dict:
    if args.loop == "passes":
        return pass_times(args)
    import cProfile
    import pstats

    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from afd_lightning.train import bare_trainer

    torch.set_num_threads(args.threads)
    pl.seed_everything(0, workers=True)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    module, shape, num_classes = build_method(
        args.case, args.method, args.attack_steps, args.channels_last, args.compile
    )
    n_batches = args.warmup + args.steps
    x = torch.rand((n_batches * shape[0], *shape[1:]))
    y = torch.randint(0, num_classes, (n_batches * shape[0],))
    times: list[float] = []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    profiler = cProfile.Profile() if args.profile else None

    def started(index: int) -> float:
        sync()
        if profiler is not None and index == args.warmup:
            profiler.enable()
        return time.perf_counter()

    def finished(t0: float) -> None:
        sync()
        times.append(time.perf_counter() - t0)

    if args.loop == "lightning":

        class Timer(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                self.t0 = started(batch_idx)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                finished(self.t0)

        trainer = bare_trainer(
            accelerator="gpu" if device == "cuda" else "cpu", precision=args.precision, callbacks=[Timer()]
        )
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=shape[0], shuffle=True))
    else:
        module.to(device)
        module.train()
        step = plain_step_fn(module, plain_optimizers(module))
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
        loader = DataLoader(TensorDataset(x, y), batch_size=shape[0], shuffle=True)
        for index, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(device), yb.to(device)
            if getattr(module.model, "channels_last", False):
                xb = xb.contiguous(memory_format=torch.channels_last)
            t0 = started(index)
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                step(xb, yb)
            finished(t0)
    if profiler is not None:
        profiler.disable()
    timed = times[args.warmup :]
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    result = {
        "case": args.case,
        "method": args.method,
        "loop": args.loop,
        "device": device,
        "batch": shape[0],
        "threads": args.threads,
        "s_per_batch_all": timed,
        "peak_mem_mb": peak,
        "peak_mem_kind": "cuda_max_allocated" if device == "cuda" else "peak_rss",
    }
    if profiler is not None:
        result["profile"] = profile_breakdown(pstats.Stats(profiler), len(timed))
        result["profile"]["step_ms_under_profiler"] = round(1000 * statistics.fmean(timed), 3)
    return result


def plain_optimizers(module) -> list:
    configured = module.configure_optimizers()
    if isinstance(configured, dict):
        return [configured["optimizer"]]
    if isinstance(configured, tuple):
        return list(configured[0])
    return list(configured) if isinstance(configured, list) else [configured]


# ----------------------------------------------------------------------------- statistics and reports
def summarize(times: list[float]) -> dict:
    """Median and spread of per-batch times (seconds)."""
    if len(times) < 2:
        raise SystemExit(f"need >= 2 timed batches for a spread, got {len(times)}: raise --steps")
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"n": len(times), "median": median, "q1": q1, "q3": q3, "iqr": q3 - q1, "min": min(times), "max": max(times)}


def pool(results: list[dict]) -> list[dict]:
    """One row per (case, method, loop): the repeats' timed batches pooled, load reports kept."""
    rows: dict[tuple, dict] = {}
    for r in results:
        key = (r["case"], r["method"], r["loop"])
        row = rows.setdefault(
            key,
            {
                **{k: v for k, v in r.items() if k not in ("load", "profile")},
                "s_per_batch_all": [],
                "loads": [],
                "peak_mem_mb": 0.0,
            },
        )
        row["s_per_batch_all"] += r["s_per_batch_all"]
        row["loads"].append(r["load"])
        row["peak_mem_mb"] = max(row["peak_mem_mb"], r["peak_mem_mb"])
        if "profile" in r:
            row["profile"] = r["profile"]
    for row in rows.values():
        row["stats"] = summarize(row["s_per_batch_all"])
        row["s_per_batch"] = row["stats"]["median"]
        row["images_per_s"] = row["batch"] / row["s_per_batch"]
        flags = [ld["busy"] for ld in row["loads"]]
        row["busy"] = None if any(f is None for f in flags) else any(flags)
        row["busy_reasons"] = sorted({reason for ld in row["loads"] for reason in ld["busy_reasons"]})
    return list(rows.values())


def ratios(rows: list[dict]) -> dict:
    by = {(r["case"], r["method"], r["loop"]): r for r in rows}
    out = {}
    for (case, method, loop), row in by.items():
        for a, b in (("afd", "at"), ("trades", "at"), ("at", "nt")):
            if method == a and (case, b, loop) in by:
                other = by[(case, b, loop)]
                out[f"{case}/{loop}/{a}_over_{b}"] = {
                    "ratio": row["s_per_batch"] / other["s_per_batch"],
                    "busy": _either(row, other),
                }
        if loop == "lightning" and (case, method, "plain") in by:
            plain = by[(case, method, "plain")]
            out[f"{case}/{method}/lightning_over_plain"] = {
                "ratio": row["s_per_batch"] / plain["s_per_batch"],
                "fixed_cost_ms": 1000 * (row["s_per_batch"] - plain["s_per_batch"]),
                "busy": _either(row, plain),
            }
    return out


def _either(a: dict, b: dict) -> bool | None:
    return None if a["busy"] is None or b["busy"] is None else a["busy"] or b["busy"]


def _flag(busy: bool | None) -> str:
    return "BUSY" if busy else ("?" if busy is None else "quiet")


def markdown(record: dict) -> str:
    ms = 1000.0
    lines = [
        f"# Training-step speed ({record['results'][0]['device']})",
        "",
        f"`{record['command']}`",
        "",
        f"{record['date']}; {record['versions']}; settings {record['settings']}.",
        "Times per batch in ms: median [quartiles] (min-max) over the timed batches. "
        "Machine load per configuration: BUSY = " + record["load_rule"] + ".",
        "",
    ]
    rows = []
    for r in record["results"]:
        s = r["stats"]
        rows.append(
            [
                r["case"],
                r["method"],
                r["loop"],
                f"{s['median'] * ms:.1f}",
                f"{s['q1'] * ms:.1f}-{s['q3'] * ms:.1f}",
                f"{s['min'] * ms:.1f}-{s['max'] * ms:.1f}",
                f"{r['images_per_s']:.1f}",
                f"{r['peak_mem_mb']:.0f}",
                _flag(r["busy"]),
            ]
        )
    head = ["model", "method", "loop", "median ms", "IQR ms", "min-max ms", "images/s", "peak MB", "load"]
    lines.append(markdown_table(head, rows))
    ratios = [
        [key, f"{v['ratio']:.3f}", f"{v['fixed_cost_ms']:.2f}" if "fixed_cost_ms" in v else "", _flag(v["busy"])]
        for key, v in record["ratios"].items()
    ]
    lines += ["", markdown_table(["ratio (median / median)", "value", "fixed cost ms/batch", "load"], ratios)]
    for case, p in record.get("passes", {}).items():
        lines += [
            "",
            f"{case}: one forward {p['forward_ms']:.2f} ms, backward into the weights "
            f"{p['backward_weights_ms']:.2f} ms, backward into the input only {p['backward_input_ms']:.2f} ms "
            f"(medians of {p['steps_timed']}; {_flag(p['busy'])}): with PGD-{p['attack_steps']} the pass count puts "
            f"afd/at at {p['afd_over_at_floor']:.3f}.",
        ]
    busy = [r for r in record["results"] if r["busy"]]
    if busy:
        lines += ["", "**Figures flagged BUSY were taken while other processes used the CPU; do not quote them.**"]
        for r in busy:
            lines.append(f"- {r['case']}/{r['method']}/{r['loop']}: {'; '.join(r['busy_reasons'][:4])}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- driver
def versions() -> dict:
    import pytorch_lightning as pl
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(CASES), help=f"comma list of {list(CASES)}")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--loops", default="lightning,plain")
    parser.add_argument("--attack-steps", type=int, default=10, help="PGD steps of the training attack")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed batches per run (median and spread reported)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration, interleaved; batches pooled")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is present")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed batches; print where the time goes")
    parser.add_argument(
        "--passes",
        action="store_true",
        help="also time one forward / backward pass per model and print the afd/at floor they imply",
    )
    parser.add_argument("--out", default=None, help="JSON path (a .md table is written beside it)")
    parser.add_argument("--one", nargs=3, metavar=("CASE", "METHOD", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 5 and not args.one:
        parser.error(f"--steps {args.steps}: at least 5 timed batches are needed for a median and a spread")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.one:
        args.case, args.method, args.loop = args.one
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return

    jobs = [
        (c, m, lp)
        for _ in range(args.repeats)
        for c in args.models.split(",")
        for m in args.methods.split(",")
        for lp in args.loops.split(",")
    ]
    passthrough = [
        f"--attack-steps={args.attack_steps}",
        f"--warmup={args.warmup}",
        f"--steps={args.steps}",
        f"--threads={args.threads}",
        f"--precision={args.precision}",
    ]
    passthrough += (
        ["--channels-last"] * args.channels_last
        + ["--compile"] * args.compile
        + ["--cpu"] * args.cpu
        + ["--profile"] * args.profile
    )
    results = []
    started = time.time()
    for i, (case, method, loop) in enumerate(jobs, 1):
        with LoadWatch(own_threads=args.threads) as watch:
            proc = subprocess.run(
                [sys.executable, __file__, "--one", case, method, loop, *passthrough],
                capture_output=True,
                text=True,
                cwd=REPO,
                check=False,
            )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{case}/{method}/{loop} failed:\n{proc.stderr[-3000:]}")
        result = {**json.loads(lines[-1][len("RESULT ") :]), "load": watch.report}
        results.append(result)
        print(
            f"[{i}/{len(jobs)}] {case}/{method}/{loop}: median {1000 * statistics.median(result['s_per_batch_all']):.1f} ms"
            f"{'  BUSY: ' + '; '.join(watch.report['busy_reasons']) if watch.report['busy'] else ''}",
            flush=True,
        )

    passes = {}
    for case in args.models.split(",") if args.passes else []:
        with LoadWatch(own_threads=args.threads) as watch:
            proc = subprocess.run(
                [sys.executable, __file__, "--one", case, "at", "passes", *passthrough],
                capture_output=True,
                text=True,
                cwd=REPO,
                check=False,
            )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{case} pass timing failed:\n{proc.stderr[-3000:]}")
        passes[case] = {
            **json.loads(lines[-1][len("RESULT ") :]),
            "busy": watch.report["busy"],
            "busy_reasons": watch.report["busy_reasons"],
        }

    rows = pool(results)
    record = {
        "command": "python benchmarks/bench_train_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": round(time.time() - started, 1),
        "versions": versions(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("one", "out")},
        "load_rule": results[0]["load"]["rule"],
        "results": rows,
        "ratios": ratios(rows),
        "busy": any(r["busy"] for r in rows) or any(p["busy"] for p in passes.values()),
    }
    if passes:
        record["passes"] = passes
    table = markdown(record)
    print("\n" + table)
    for r in rows:
        if "profile" in r:
            print(
                f"profile {r['case']}/{r['method']}/{r['loop']} (ms per batch, "
                f"{r['profile']['step_ms_under_profiler']} ms under the profiler):"
            )
            for part in ("cumulative_ms", "self_ms_by_package"):
                for k, v in r["profile"][part].items():
                    print(f"  {part[:4]:<5} {k:<50} {v:>9.2f}")
    device = rows[0]["device"]
    out = Path(args.out or REPO / "benchmarks" / "results" / f"train_step_{device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    from afd_lightning.run import provenance  # commit, versions, threads, device, command, wall time

    record["provenance"] = provenance.collect(device=device, wall_s=record["wall_s"]).to_json()
    out.write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(f"written to {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

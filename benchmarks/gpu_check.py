"""One-command GPU check of training speed and mixed-precision numerics (about 6 minutes on one H100).

    python benchmarks/gpu_check.py                 # on a GPU: writes benchmarks/results/gpu_<name>.json and .md
    python benchmarks/gpu_check.py --dry-run       # the whole path on the CPU with tiny sizes (tests/benchmarks/test_gpu_check.py)

Three parts, in this order (the slow compile variant last, so a time budget cuts it first):

1. ``fp16_afd``: 50 batches of AFD under Lightning's ``precision=16-mixed`` on the CIFAR ResNet18:
   the three optimizers share one GradScaler. Every optimizer step is checked: loss scale, whether
   the unscaled gradients were finite, whether the update was applied (the scaler skips exactly the
   steps with non-finite gradients) and whether the parameters stayed finite.
2. ``attack_autocast``: PGD-10 (L-inf) in float32, as the project runs every attack, against the same
   attack run under autocast (bf16, and fp16 on a GPU), on a ResNet18 trained here for a few epochs on
   the built-in digits upsampled to 3x32x32 (real data, no download): accuracy left and mean loss at
   each eps, and time. ``offer_attack_autocast`` is true only if autocast was faster (<= 0.9x the
   time) and no weaker (accuracy within two binomial standard errors at every eps, mean loss at least
   98% of float32's). Nothing in the package offers ``attack.autocast`` until this says so on a GPU.
3. ``throughput``: images/s of nt, at, trades and afd (training attack PGD-10) for fp32, bf16-mixed,
   bf16 + channels_last and bf16 + channels_last + torch.compile, each through Lightning and through
   the plain PyTorch loop of benchmarks/bench_train_step.py with the same settings in the same process;
   median and quartiles over the timed batches, peak memory (``torch.cuda.max_memory_allocated``),
   and the machine's CPU load (benchmarks/machine_load.py; BUSY flags a figure taken beside other work).

``--budget-s`` (default 450) skips the configurations that would not finish in time and says so.
``--dry-run`` runs on the CPU with 8x8 images, batch 4, 2 timed steps, PGD-1 and 2 fp16 steps (bf16 there:
Lightning has no fp16 AMP on the CPU); its figures measure nothing. torch.compile uses the eager backend (dynamo's capture
without inductor's code generation, which takes minutes on a CPU). It writes into a temporary folder
(or ``--out-dir``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train_step as bench
from machine_load import LoadWatch

from afd_lightning.evaluation.report.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]
CASE = "gpu_cifar_resnet18"
METHODS = ("nt", "at", "trades", "afd")
VARIANTS = {  # name: (precision, channels_last, compile)
    "fp32": ("32-true", False, False),
    "bf16": ("bf16-mixed", False, False),
    "bf16_cl": ("bf16-mixed", True, False),
    "bf16_cl_compile": ("bf16-mixed", True, True),
}
SIZES = {
    "gpu": dict(batch=128, steps=20, warmup=3, attack_steps=10, fp16_steps=50, train_epochs=15, eval_n=500, image=32),
    "dry": dict(batch=4, steps=2, warmup=1, attack_steps=1, fp16_steps=2, train_epochs=1, eval_n=16, image=8),
}
ATTACK_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
MODEL_OVERRIDES = ("dataset=cifar10", "model=resnet18")  # the network of every part (one place: the tests narrow it)


@contextlib.contextmanager
def eager_compile():
    """torch.compile with the eager backend: the dry run exercises the capture path in seconds."""
    import torch

    original = torch.nn.Module.compile

    def compile_eager(self, *args, **kwargs):
        kwargs.setdefault("backend", "eager")
        return original(self, *args, **kwargs)

    torch.nn.Module.compile = compile_eager
    try:
        yield
    finally:
        torch.nn.Module.compile = original


# ----------------------------------------------------------------------------- 1. fp16 AFD
def fp16_afd(sz: dict, device: str) -> dict:
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from afd_lightning.train import bare_trainer

    class UpdateProbe(pl.Callback):
        """Records every optimizer step: scale, finite gradients, applied, finite parameters."""

        def __init__(self):
            self.rows: list[dict] = []
            self.pending = None
            self.batch = -1

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.batch = batch_idx

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # gradients already unscaled here
            self.close()
            params = [p for g in optimizer.param_groups for p in g["params"]]
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            index = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
            row = {
                "batch": self.batch,
                "optimizer": index,
                "scale": None if scaler is None else float(scaler.get_scale()),
                "grads_finite": all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params),
            }
            self.pending = (params, [p.detach().clone() for p in params], row)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.close()

        def close(self):
            if self.pending is None:
                return
            params, before, row = self.pending
            row["applied"] = any(not torch.equal(p.detach(), b) for p, b in zip(params, before))
            row["params_finite"] = all(bool(torch.isfinite(p).all()) for p in params)
            self.rows.append(row)
            self.pending = None

    precision = "16-mixed" if device == "cuda" else "bf16-mixed"
    module, shape, num_classes = bench.build_method(CASE, "afd", sz["attack_steps"], False, False)
    n = sz["fp16_steps"] * shape[0]
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand((n, *shape[1:]), generator=g), torch.randint(0, num_classes, (n,), generator=g))
    probe = UpdateProbe()
    trainer = bare_trainer(accelerator="gpu" if device == "cuda" else "cpu", precision=precision, callbacks=[probe])
    error = None
    try:
        trainer.fit(module, DataLoader(data, batch_size=shape[0]))
    except Exception as err:  # reported as a failed check, with its message
        error = f"{type(err).__name__}: {err}"
    rows = probe.rows
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    per_opt = {i: [r for r in rows if r["optimizer"] == i] for i in range(3)}
    last = sz["fp16_steps"] - min(10, sz["fp16_steps"])
    checks = {
        "no_error": error is None,
        "all_steps_ran": len(rows) == 3 * sz["fp16_steps"],
        "params_finite_after_every_update": all(r["params_finite"] for r in rows),
        # the scaler skips a step exactly when its unscaled gradients are not finite
        "applied_iff_grads_finite": all(r["applied"] == r["grads_finite"] for r in rows),
        "each_optimizer_skips_at_most_20pct": all(
            sum(not r["applied"] for r in rs) <= 0.2 * len(rs) for rs in per_opt.values()
        ),
        "every_update_applied_in_the_last_10_batches": all(r["applied"] for r in rows if r["batch"] >= last),
        "final_scale_at_least_1": scaler is None or float(scaler.get_scale()) >= 1.0,
    }
    scales = [r["scale"] for r in rows if r["scale"] is not None]
    return {
        "precision": precision,
        "batches": sz["fp16_steps"],
        "error": error,
        "checks": checks,
        "passed": all(checks.values()),
        "skipped_per_optimizer": {
            ["cls", "disc", "enc"][i]: sum(not r["applied"] for r in rs) for i, rs in per_opt.items()
        },
        "scale": None
        if not scales
        else {"first": scales[0], "min": min(scales), "max": max(scales), "final": float(scaler.get_scale())},
        "steps": rows,
    }


# ----------------------------------------------------------------------------- 2. attacks under autocast
def digits_rgb(device: str, size: int):
    """sklearn's 1,797 digits as 3 x size x size images in [0, 1] (bilinear upsampling): train and test tensors."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm].to(device), y[perm].to(device)
    return (x[:1297], y[:1297]), (x[1297:], y[1297:])


def attack_autocast(sz: dict, device: str) -> dict:
    import torch
    import torch.nn.functional as F
    from hydra import compose, initialize_config_dir

    from afd_lightning.attacks import AttackFactory, attack_mode
    from afd_lightning.config.paths import config_dir
    from afd_lightning.nets.build import build_model

    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*MODEL_OVERRIDES, "paths.output_dir=/tmp/afd-gpu-check"])
    model = build_model(cfg.model).to(device)
    (x_tr, y_tr), (x_te, y_te) = digits_rgb(device, sz["image"])
    if sz["eval_n"] < 100:  # dry run
        x_tr, y_tr = x_tr[:64], y_tr[:64]
    x_te, y_te = x_te[: sz["eval_n"]], y_te[: sz["eval_n"]]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    for _ in range(sz["train_epochs"]):
        for idx in torch.randperm(len(x_tr), device=device).split(sz["batch"]):
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def accuracy_and_loss(x):
        with torch.no_grad():
            logits = torch.cat([model(b) for b in x.split(256)])
        return (logits.argmax(1) == y_te).float().mean().item(), F.cross_entropy(logits.float(), y_te).item()

    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    if device == "cuda":
        dtypes["fp16"] = torch.float16
    clean_acc, _ = accuracy_and_loss(x_te)
    rows = {name: {"acc": [], "loss": [], "seconds": []} for name in dtypes}
    for eps in ATTACK_EPS:
        factory = AttackFactory(
            "advertorch.attacks.LinfPGDAttack",
            eps=eps,
            steps=10 if device == "cuda" else 1,
            step_size=eps / 4,
            rand_init=True,
        )
        for name, dtype in dtypes.items():

            def run(x, y, dtype=dtype, factory=factory):
                if dtype is None:  # the project's path: float32, autocast off
                    return factory(model, x, y)
                with attack_mode(model), torch.enable_grad(), torch.autocast(device, dtype=dtype):
                    return factory.build(model).perturb(x, y).detach()

            run(x_te[: sz["batch"]], y_te[: sz["batch"]])  # warm-up (kernels, autotuning)
            torch.manual_seed(1)
            sync()
            t0 = time.perf_counter()
            x_adv = torch.cat([run(xb, yb) for xb, yb in zip(x_te.split(sz["batch"]), y_te.split(sz["batch"]))])
            sync()
            acc, loss = accuracy_and_loss(x_adv)
            rows[name]["acc"].append(acc)
            rows[name]["loss"].append(loss)
            rows[name]["seconds"].append(time.perf_counter() - t0)
    n = len(y_te)
    verdicts = {}
    for name in dtypes:
        if name == "fp32":
            continue
        ref = rows["fp32"]
        tol = [2 * math.sqrt(max(a * (1 - a), 1 / n) / n) for a in ref["acc"]]
        weaker = any(a > r + t for a, r, t in zip(rows[name]["acc"], ref["acc"], tol)) or any(
            lo < 0.98 * lr for lo, lr in zip(rows[name]["loss"], ref["loss"])
        )
        speed = sum(rows[name]["seconds"]) / sum(ref["seconds"])
        verdicts[name] = {
            "time_vs_fp32": speed,
            "weaker": weaker,
            "faster": speed <= 0.9,
            "offer": speed <= 0.9 and not weaker,
        }
    return {
        "model": f"resnet18 (CIFAR) trained here on digits at 3x{sz['image']}x{sz['image']}",
        "train_epochs": sz["train_epochs"],
        "n_test": n,
        "clean_acc": clean_acc,
        "eps": list(ATTACK_EPS),
        "attack": "LinfPGD, step eps/4, random start",
        "attack_steps": 10 if device == "cuda" else 1,
        "results": rows,
        "verdicts": verdicts,
        "offer_attack_autocast": any(v["offer"] for v in verdicts.values()),
    }


# ----------------------------------------------------------------------------- 3. throughput
def throughput(
    sz: dict, device: str, budget_s: float, started: float, threads: int, methods=METHODS, variants=tuple(VARIANTS)
) -> list[dict]:
    import torch

    out, last_duration = [], {}
    for variant in variants:
        precision, channels_last, compile_ = VARIANTS[variant]
        for method in methods:
            for loop in ("lightning", "plain"):
                row = {
                    "variant": variant,
                    "method": method,
                    "loop": loop,
                    "precision": precision,
                    "channels_last": channels_last,
                    "compile": compile_,
                }
                left = budget_s - (time.perf_counter() - started)
                if left < last_duration.get((variant, method), last_duration.get(variant, 0.0)):
                    out.append({**row, "skipped": f"time budget ({left:.0f}s left)"})
                    continue
                if device == "cuda":  # peak memory of this configuration alone
                    gc.collect()
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                args = Namespace(
                    case=CASE,
                    method=method,
                    loop=loop,
                    attack_steps=sz["attack_steps"],
                    warmup=sz["warmup"],
                    steps=sz["steps"],
                    threads=threads,
                    precision=precision,
                    channels_last=channels_last,
                    compile=compile_,
                    cpu=device == "cpu",
                    profile=False,
                )
                t0 = time.perf_counter()
                with LoadWatch(own_threads=threads, sample_s=0.1) as watch:
                    result = bench.run_one(args)
                last_duration[(variant, method)] = last_duration[variant] = time.perf_counter() - t0
                stats = bench.summarize(result["s_per_batch_all"])
                out.append(
                    {
                        **row,
                        "batch": result["batch"],
                        "images_per_s": result["batch"] / stats["median"],
                        "ms": {k: (v * 1000 if k != "n" else v) for k, v in stats.items()},
                        "peak_mem_mb": result["peak_mem_mb"],
                        "peak_mem_kind": result["peak_mem_kind"],
                        "seconds": round(last_duration[variant], 1),
                        "busy": watch.report["busy"],
                        "busy_reasons": watch.report["busy_reasons"],
                    }
                )
                print(f"  {variant:<16} {method:<7} {loop:<9} {out[-1]['images_per_s']:9.1f} img/s", flush=True)
    return out


# ----------------------------------------------------------------------------- report
def markdown(record: dict) -> str:
    lines = [
        f"# GPU check: {record['device_name']}",
        "",
        f"`{record['command']}`",
        "",
        *(["**DRY RUN on the CPU with tiny sizes: these figures measure nothing.**", ""] if record["dry_run"] else []),
        f"{record['date']}; {record['versions']}; sizes {record['sizes']}; {record['wall_s']} s.",
        "",
        "## Throughput (images/s, median of the timed batches; Lightning / plain = time ratio)",
        "",
    ]
    table = []
    rows = {(r["variant"], r["method"], r["loop"]): r for r in record["throughput"]}
    for variant in dict.fromkeys(r["variant"] for r in record["throughput"]):
        for method in dict.fromkeys(r["method"] for r in record["throughput"]):
            lt, pl_ = rows.get((variant, method, "lightning")), rows.get((variant, method, "plain"))
            if not lt or not pl_ or "skipped" in lt or "skipped" in pl_:
                why = (lt or pl_ or {}).get("skipped", "not run")
                table.append([variant, method, f"skipped: {why}", "", "", "", ""])
                continue
            busy = "BUSY" if lt["busy"] or pl_["busy"] else "quiet"
            table.append(
                [
                    variant,
                    method,
                    f"{lt['images_per_s']:.0f}",
                    f"{pl_['images_per_s']:.0f}",
                    f"{pl_['images_per_s'] / lt['images_per_s']:.3f}",
                    f"{lt['peak_mem_mb']:.0f} / {pl_['peak_mem_mb']:.0f}",
                    busy,
                ]
            )
    head = ["variant", "method", "Lightning img/s", "plain img/s", "Lightning / plain", "peak MB (L / plain)", "load"]
    lines.append(markdown_table(head, table))
    f16 = record["fp16_afd"]
    lines += [
        "",
        f"## AFD under {f16['precision']}, {f16['batches']} batches: {'PASSED' if f16['passed'] else 'FAILED'}",
        "",
        *[f"- {k}: {'ok' if v else 'FAILED'}" for k, v in f16["checks"].items()],
        f"- skipped updates per optimizer: {f16['skipped_per_optimizer']}; loss scale: {f16['scale']}",
    ]
    if f16["error"]:
        lines.append(f"- error: {f16['error']}")
    att = record["attack_autocast"]
    lines += [
        "",
        f"## Attacks in float32 vs under autocast ({att['attack']}, {att['attack_steps']} steps, "
        f"{att['n_test']} test images, clean accuracy {att['clean_acc']:.3f})",
        "",
        markdown_table(
            ["attack precision", *(f"acc @ {e * 255:.0f}/255" for e in att["eps"]), "seconds"],
            [[name, *(f"{a:.3f}" for a in r["acc"]), f"{sum(r['seconds']):.2f}"] for name, r in att["results"].items()],
        ),
    ]
    lines += [
        "",
        f"Verdicts: {att['verdicts']}.",
        f"**offer attack.autocast: {'yes' if att['offer_attack_autocast'] else 'no'}**",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, temporary output folder")
    parser.add_argument("--name", default=None, help="results name (default: the GPU's name)")
    parser.add_argument(
        "--out-dir", default=None, help="default: benchmarks/results (a temporary folder with --dry-run)"
    )
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip throughput configurations past this time")
    parser.add_argument("--methods", default=",".join(METHODS), help="throughput: comma list of nt,at,trades,afd")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"throughput: comma list of {','.join(VARIANTS)}"
    )
    args = parser.parse_args(argv)
    methods, variants = args.methods.split(","), args.variants.split(",")
    for given, known, flag in ((methods, METHODS, "--methods"), (variants, VARIANTS, "--variants")):
        if not given or any(g not in known for g in given):
            parser.error(f"{flag} {','.join(given)}: choose from {','.join(known)}")

    import torch

    started = time.perf_counter()
    if args.dry_run:
        device, sz, threads = "cpu", SIZES["dry"], 1
    elif torch.cuda.is_available():
        device, sz, threads = "cuda", SIZES["gpu"], min(8, os.cpu_count() or 1)
    else:
        raise SystemExit("no CUDA GPU here: run on a GPU machine, or pass --dry-run to check the path on the CPU")
    torch.set_num_threads(threads)
    bench.CASES[CASE] = ([*MODEL_OVERRIDES, f"dataset.meta.image_size={sz['image']}"], sz["batch"])
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    name = args.name or ("dry_run" if args.dry_run else re.sub(r"[^a-z0-9]+", "_", device_name.lower()).strip("_"))
    out_dir = (
        Path(args.out_dir)
        if args.out_dir
        else (Path(tempfile.mkdtemp(prefix="afd-gpu-check-")) if args.dry_run else REPO / "benchmarks" / "results")
    )

    with eager_compile() if args.dry_run else contextlib.nullcontext():
        print("1/3 AFD under 16-mixed ...", flush=True)
        fp16 = fp16_afd(sz, device)
        print(f"    {'passed' if fp16['passed'] else 'FAILED'}: {fp16['checks']}", flush=True)
        print("2/3 attacks in float32 vs under autocast ...", flush=True)
        attacks = attack_autocast(sz, device)
        print(f"    offer attack.autocast: {attacks['offer_attack_autocast']}", flush=True)
        print("3/3 throughput ...", flush=True)
        rows = throughput(sz, device, args.budget_s, started, threads, methods, variants)
    record = {
        "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device_name": device_name,
        "dry_run": args.dry_run,
        "versions": bench.versions(),
        "sizes": sz,
        "wall_s": round(time.perf_counter() - started, 1),
        "fp16_afd": fp16,
        "attack_autocast": attacks,
        "throughput": rows,
        "median_lightning_over_plain": _median_ratio(rows),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"gpu_{name}.json", out_dir / f"gpu_{name}.md"
    from afd_lightning.run import provenance  # commit, versions, threads, device, command, wall time

    record["provenance"] = provenance.collect(device=str(device), wall_s=record["wall_s"]).to_json()
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    md_path.write_text(markdown(record))
    print("\n" + markdown(record) + f"\nwritten to {json_path} and {md_path}")
    return record


def _median_ratio(rows: list[dict]) -> float | None:
    by = {(r["variant"], r["method"], r["loop"]): r for r in rows if "skipped" not in r}
    ratios = [
        by[(v, m, "lightning")]["ms"]["median"] / by[(v, m, "plain")]["ms"]["median"]
        for v, m, lp in by
        if lp == "lightning" and (v, m, "plain") in by
    ]
    return statistics.median(ratios) if ratios else None


if __name__ == "__main__":
    main()

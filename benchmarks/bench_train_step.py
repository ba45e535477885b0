"""Training-step speed of nt, at, trades and afd, through Lightning and through a plain PyTorch loop.

Each (model, method, loop) runs in its own subprocess, so peak memory is that configuration's
own (peak RSS on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU).  The plain loop does
exactly the math of the LightningModule's ``training_step`` on the same model, attack and
optimizers, without the Trainer, so ``lightning / plain`` is Lightning's overhead.

    python benchmarks/bench_train_step.py                          # both models, all methods, CPU
    python benchmarks/bench_train_step.py --models digits --steps 20
    python benchmarks/bench_train_step.py --precision bf16-mixed --channels-last   # GPU variants

Prints a table and the ratios afd/at, trades/at, at/nt and lightning/plain, and writes JSON
(``--out``, default benchmarks/results/train_step_<device>.json).
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
    from afd_lightning.nets.build import build_model
    from afd_lightning.runtime import config_dir

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
    """The LightningModule's training_step math with plain backward()/step() calls."""
    import torch
    import torch.nn.functional as F

    from afd_lightning.methods import AFD, TRADES, AdversarialTraining, NaturalTraining
    from afd_lightning.attacks import frozen
    from afd_lightning.methods.base import kl_clean_to_adv

    model = module.model

    def update(opt, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if isinstance(module, AFD):
        opt_cls, opt_disc, opt_enc = optimizers
        disc = module.discriminator

        def step(x, y):
            x_adv = module.attack(model, x, y)
            logits = model(x)
            update(opt_cls, F.cross_entropy(logits, y))
            with torch.no_grad():
                z_clean, z_adv = model.encoder(x), model.encoder(x_adv)
            update(opt_disc, module.disc_loss_fn(disc(z_clean, y), disc(z_adv, y)))
            z_adv = model.encoder(x_adv)
            with frozen(disc):
                update(opt_enc, module.enc_loss_fn(disc(z_adv, y)))
            with torch.no_grad():
                return (model.classifier(z_adv.detach()).argmax(1) == y).float().mean()

    elif isinstance(module, TRADES):
        (opt,) = optimizers

        def step(x, y):
            x_adv = module.trades_adversarial(x)
            logits, logits_adv = model(x), model(x_adv)
            loss = F.cross_entropy(logits, y) + module.beta * kl_clean_to_adv(logits_adv, F.softmax(logits, dim=1))
            update(opt, loss)
            return (logits_adv.argmax(1) == y).float().mean()

    elif isinstance(module, AdversarialTraining):
        (opt,) = optimizers

        def step(x, y):
            logits_adv = model(module.attack(model, x, y))
            update(opt, F.cross_entropy(logits_adv, y))
            return (logits_adv.argmax(1) == y).float().mean()

    elif isinstance(module, NaturalTraining):
        (opt,) = optimizers

        def step(x, y):
            logits = model(x)
            update(opt, F.cross_entropy(logits, y))
            return (logits.argmax(1) == y).float().mean()

    else:
        raise SystemExit(f"no plain loop for {type(module).__name__}")
    return step


def run_one(args) -> dict:
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(args.threads)
    pl.seed_everything(0, workers=True)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    module, shape, num_classes = build_method(args.case, args.method, args.attack_steps, args.channels_last, args.compile)
    n_batches = args.warmup + args.steps
    x = torch.rand((n_batches * shape[0], *shape[1:]))
    y = torch.randint(0, num_classes, (n_batches * shape[0],))
    times: list[float] = []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    if args.loop == "lightning":

        class Timer(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                sync()
                self.t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                sync()
                times.append(time.perf_counter() - self.t0)

        trainer = pl.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1, precision=args.precision,
            limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()],
        )
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=shape[0], shuffle=True))
    else:
        module.to(device)
        configured = module.configure_optimizers()
        if isinstance(configured, dict):
            optimizers = [configured["optimizer"]]
        elif isinstance(configured, tuple):
            optimizers = list(configured[0])
        elif isinstance(configured, list):
            optimizers = configured
        else:
            optimizers = [configured]
        module.train()
        step = plain_step_fn(module, optimizers)
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
        loader = DataLoader(TensorDataset(x, y), batch_size=shape[0], shuffle=True)
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            if getattr(module.model, "channels_last", False):
                xb = xb.contiguous(memory_format=torch.channels_last)
            sync()
            t0 = time.perf_counter()
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                step(xb, yb)
            sync()
            times.append(time.perf_counter() - t0)
    timed = times[args.warmup:]
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "case": args.case, "method": args.method, "loop": args.loop, "device": device,
        "batch": shape[0], "steps_timed": len(timed),
        "s_per_batch": statistics.median(timed), "s_per_batch_all": timed,
        "images_per_s": shape[0] / statistics.median(timed),
        "peak_mem_mb": peak, "peak_mem_kind": "cuda_max_allocated" if device == "cuda" else "peak_rss",
    }


# ----------------------------------------------------------------------------- driver
def versions() -> dict:
    import pytorch_lightning as pl
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "pytorch_lightning": pl.__version__,
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "processor": platform.processor()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(CASES), help=f"comma list of {list(CASES)}")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--loops", default="lightning,plain")
    parser.add_argument("--attack-steps", type=int, default=10, help="PGD steps of the training attack")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed batches (median reported)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is present")
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", nargs=3, metavar=("CASE", "METHOD", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        args.case, args.method, args.loop = args.one
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return

    from rich.progress import track

    jobs = [(c, m, lp) for c in args.models.split(",") for m in args.methods.split(",") for lp in args.loops.split(",")]
    passthrough = [f"--attack-steps={args.attack_steps}", f"--warmup={args.warmup}", f"--steps={args.steps}",
                   f"--threads={args.threads}", f"--precision={args.precision}"]
    passthrough += ["--channels-last"] * args.channels_last + ["--compile"] * args.compile + ["--cpu"] * args.cpu
    results = []
    started = time.time()
    for case, method, loop in track(jobs, description="benchmarking"):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", case, method, loop, *passthrough],
            capture_output=True, text=True, cwd=REPO,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{case}/{method}/{loop} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))

    by = {(r["case"], r["method"], r["loop"]): r for r in results}
    print(f"\n{'model':<15} {'method':<7} {'loop':<9} {'s/batch':>9} {'img/s':>9} {'peak MB':>9}")
    for r in results:
        print(f"{r['case']:<15} {r['method']:<7} {r['loop']:<9} {r['s_per_batch']:>9.4f} {r['images_per_s']:>9.1f} {r['peak_mem_mb']:>9.0f}")
    ratios = {}
    for case in args.models.split(","):
        for loop in args.loops.split(","):
            t = {m: by[(case, m, loop)]["s_per_batch"] for m in args.methods.split(",") if (case, m, loop) in by}
            for a, b in (("afd", "at"), ("trades", "at"), ("at", "nt")):
                if a in t and b in t:
                    ratios[f"{case}/{loop}/{a}_over_{b}"] = t[a] / t[b]
        for m in args.methods.split(","):
            if (case, m, "lightning") in by and (case, m, "plain") in by:
                ratios[f"{case}/{m}/lightning_over_plain"] = (
                    by[(case, m, "lightning")]["s_per_batch"] / by[(case, m, "plain")]["s_per_batch"]
                )
    print("\nratios (time per batch, same run):")
    for key, value in ratios.items():
        print(f"  {key:<45} {value:.3f}")
    device = results[0]["device"]
    out = Path(args.out or REPO / "benchmarks" / "results" / f"train_step_{device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": "python benchmarks/bench_train_step.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": round(time.time() - started, 1),
        "versions": versions(), "settings": {k: v for k, v in vars(args).items() if k not in ("one", "out")},
        "results": results, "ratios": ratios,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()

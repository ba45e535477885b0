"""Soak test: one long AFD run on digits in one process; memory and speed per epoch.

    .venv/bin/python benchmarks/soak.py --epochs 200          # writes benchmarks/results/soak_digits.{json,md}
    .venv/bin/python benchmarks/soak.py --epochs 20 --out /tmp/soak method=at   # extra args: Hydra overrides

Records, at the end of every training epoch (after validation): the process's resident memory
(RSS, /proc/self/statm), its peak so far (ru_maxrss), the epoch's wall time, and the count of
live Python objects. A leak shows as RSS climbing epoch after epoch; a slowdown as later epochs
taking longer than early ones. The run uses the default configuration (callbacks included:
checkpoints every epoch, exact-resume state, the discriminator health monitor) with CSV logging.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from afd_lightning.evaluation.report.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument(
        "--out",
        default=str(REPO / "benchmarks" / "results" / "soak_digits"),
        help="output path without extension (.json and .md are written)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. method=at")
    args = parser.parse_args()

    import pytorch_lightning as pl
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from afd_lightning.callbacks import DiscriminatorHealth
    from afd_lightning.config.paths import config_dir
    from afd_lightning.train import build

    class Probe(pl.Callback):
        def __init__(self):
            self.rows: list[dict] = []
            self._t0 = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.rows.append(
                {
                    "epoch": trainer.current_epoch,
                    "seconds": round(time.perf_counter() - self._t0, 3),  # training + validation of the epoch
                    "rss_mb": round(rss_mb(), 1),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                    "python_objects": len(gc.get_objects()),
                    "val_acc_adv": float(trainer.callback_metrics.get("val/acc_adv", float("nan"))),
                }
            )

    overrides = [
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"trainer.max_epochs={args.epochs}",
        *args.overrides,
    ]
    workdir = Path(tempfile.mkdtemp(prefix="afd-soak-"))
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(workdir)
    probe = Probe()
    start_rss = rss_mb()
    datamodule, method, trainer = build(cfg)
    trainer.callbacks.append(probe)
    started = time.perf_counter()
    trainer.fit(method, datamodule=datamodule)
    total = time.perf_counter() - started
    rows = probe.rows
    health = next((c for c in trainer.callbacks if isinstance(c, DiscriminatorHealth)), None)

    n = len(rows)
    window = max(1, min(20, n // 4))
    steady = [r for r in rows if r["epoch"] >= min(10, n // 2)]
    first, last = rows[1 : 1 + window] or rows[:window], rows[-window:]
    summary = {
        "epochs": n,
        "total_seconds": round(total, 1),
        "rss_mb_before_build": round(start_rss, 1),
        "rss_mb_at_epoch": {str(r["epoch"]): r["rss_mb"] for r in rows if r["epoch"] in {0, 1, 9, 49, 99, 149, n - 1}},
        "peak_rss_mb_at_epoch": {
            str(r["epoch"]): r["peak_rss_mb"] for r in rows if r["epoch"] in {0, 1, 9, 49, 99, 149, n - 1}
        },
        "rss_growth_mb_per_epoch_after_warmup": round(
            slope([r["epoch"] for r in steady], [r["rss_mb"] for r in steady]), 4
        ),
        "python_objects_first_last": [rows[0]["python_objects"], rows[-1]["python_objects"]],
        "epoch_seconds_median_first": round(statistics.median(r["seconds"] for r in first), 3),
        "epoch_seconds_median_last": round(statistics.median(r["seconds"] for r in last), 3),
        "window_epochs": window,
        "final_val_acc_adv": rows[-1]["val_acc_adv"],
        "disc_health_warnings": health.warnings if health else None,
    }
    summary["slowdown_last_vs_first"] = round(
        summary["epoch_seconds_median_last"] / summary["epoch_seconds_median_first"], 3
    )
    command = "python benchmarks/soak.py " + " ".join(sys.argv[1:])
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"command": command, "overrides": overrides, "machine": machine, "summary": summary, "per_epoch": rows}
    from afd_lightning.run import provenance  # commit, versions, threads, device, command, wall time

    result["provenance"] = provenance.collect(device="cpu", wall_s=provenance.process_seconds()).to_json()
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")

    lines = [
        f"# Soak: {n} epochs of `{' '.join(args.overrides) or 'method=afd'}` on digits in one process",
        "",
        f"Command: `{command}` ({summary['total_seconds']} s; {machine['cpus']} CPUs, torch {machine['torch']}, "
        f"Lightning {machine['pytorch_lightning']}; load average at the end {machine['load_average_at_end'][0]:.1f}).",
        "",
        markdown_table(
            ["epoch", "RSS (MB)", "peak RSS (MB)", "epoch time (s)", "live Python objects"],
            [
                [r["epoch"], r["rss_mb"], r["peak_rss_mb"], r["seconds"], r["python_objects"]]
                for r in rows
                if r["epoch"] in {0, 1, 9, 24, 49, 99, 149, n - 1} or n <= 12
            ],
        ),
    ]
    lines += [
        "",
        f"- RSS trend after warm-up: {summary['rss_growth_mb_per_epoch_after_warmup']:+.4f} MB/epoch "
        f"(least squares over epochs {steady[0]['epoch']}-{steady[-1]['epoch']}).",
        f"- Median epoch time, epochs 1-{window}: {summary['epoch_seconds_median_first']} s; last {window}: "
        f"{summary['epoch_seconds_median_last']} s (ratio {summary['slowdown_last_vs_first']}). Epoch times include "
        "validation and checkpoint writing, on a machine shared with other jobs.",
        f"- Discriminator health warnings: {len(summary['disc_health_warnings'] or [])}.",
        f"- Final val/acc_adv: {summary['final_val_acc_adv']:.4f}.",
        "",
        "Per-epoch figures: the `.json` next to this file.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""benchmarks/gpu_check.py: its --dry-run runs the whole path on the CPU and writes a complete report."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import pytest
import torch

from helpers import zygote
from helpers.compose import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402

# The dry run's own sizes (batch 4, 16 test and 64 training images) made smaller still, and its ResNet18 cut to
# two stages of one BasicBlock, 8 and 16 channels (the same network class, with its stride-2 downsampling
# shortcut). On a CPU without bf16 kernels (AVX2 only) a bf16 convolution in NCHW layout falls back to a slow
# reference kernel whose time grows with the channels squared (a backward of the full net at batch 2, 8x8 takes
# about 1.4 s; at 8 to 64 channels, 0.03 s), and torch.compile's capture (dynamo, eager backend, six captures: grad
# mode and autocast differ between the steps) grows with the number of blocks. The test checks the path, not the
# figures: the same methods, loops, precisions, layouts and compile. Batch 2 is the smallest BatchNorm takes in
# training; the training images are cut to 8 after the real loader. The rest is gpu_check.main, as
# `gpu_check.py --dry-run` runs it.
SMALLER_DRY_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
import gpu_check

gpu_check.SIZES["dry"].update(batch=2, eval_n=4)
gpu_check.MODEL_OVERRIDES = (*gpu_check.MODEL_OVERRIDES, "+model.planes=[8,16]", "+model.num_blocks=[1,1]")
real_digits_rgb = gpu_check.digits_rgb


def digits_rgb(device, size):
    (x_train, y_train), test = real_digits_rgb(device, size)
    return (x_train[:8], y_train[:8]), test


gpu_check.digits_rgb = digits_rgb
gpu_check.main(sys.argv[2:])
"""


@pytest.mark.slow
def test_dry_run_writes_every_part(tmp_path):
    # all four precision/layout/compile variants for the three-optimizer AFD, the hardest path (every method:
    # `--dry-run` alone; nt is left out here to keep the suite's time: its path is a subset of AFD's)
    # forked from the tests' zygote (helpers/zygote.py), which has imported torch and Lightning already: a new
    # process all the same (its own sys.modules, dynamo caches, thread count, seeds), without the import's 8 s
    script = tmp_path / "smaller_dry_run.py"
    script.write_text(SMALLER_DRY_RUN)
    out = tmp_path / "out"
    proc = zygote.run(
        [script, REPO / "benchmarks", "--dry-run", "--methods", "afd", "--out-dir", out],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "gpu_dry_run.json").read_text())
    md = (out / "gpu_dry_run.md").read_text()
    assert record["dry_run"] is True and "DRY RUN" in md
    assert record["sizes"]["batch"] == 2 and record["attack_autocast"]["n_test"] == 4  # the smaller sizes applied

    rows = record["throughput"]
    got = {(r["variant"], r["method"], r["loop"]) for r in rows}
    assert got == {(v, m, lp) for v in gpu_check.VARIANTS for m in ("afd",) for lp in ("lightning", "plain")}
    for r in rows:
        assert "skipped" not in r, r
        assert math.isfinite(r["images_per_s"]) and r["images_per_s"] > 0
        assert 0 < r["ms"]["min"] <= r["ms"]["median"] <= r["ms"]["max"] and r["ms"]["n"] == 2
        assert r["peak_mem_mb"] > 0 and isinstance(r["busy"], bool)
    assert {r["compile"] for r in rows} == {True, False} and {r["precision"] for r in rows} == {"32-true", "bf16-mixed"}
    assert record["median_lightning_over_plain"] > 0

    fp16 = record["fp16_afd"]
    assert fp16["error"] is None and fp16["passed"] and all(fp16["checks"].values())
    assert len(fp16["steps"]) == 3 * 2  # three optimizers, two batches
    assert [s["optimizer"] for s in fp16["steps"]] == [0, 1, 2, 0, 1, 2]
    assert all(s["applied"] and s["params_finite"] and s["grads_finite"] for s in fp16["steps"])

    att = record["attack_autocast"]
    assert set(att["results"]) == {"fp32", "bf16"} and set(att["verdicts"]) == {"bf16"}
    for r in att["results"].values():
        assert len(r["acc"]) == len(att["eps"]) and all(0.0 <= a <= 1.0 for a in r["acc"])
    assert isinstance(att["offer_attack_autocast"], bool)
    for table in ("## Throughput", "## AFD under", "## Attacks in float32", "offer attack.autocast"):
        assert table in md


def test_time_budget_skips_and_says_so():
    rows = gpu_check.throughput(
        gpu_check.SIZES["dry"],
        "cpu",
        budget_s=0.0,
        started=time.perf_counter() - 1,
        threads=1,
        methods=("afd",),
        variants=("fp32",),
    )
    assert [r["loop"] for r in rows] == ["lightning", "plain"]
    assert all(r["skipped"].startswith("time budget") for r in rows)
    report = gpu_check.markdown(
        {
            "device_name": "x",
            "command": "c",
            "dry_run": False,
            "date": "d",
            "versions": {},
            "sizes": {},
            "wall_s": 0,
            "throughput": rows,
            "fp16_afd": {
                "precision": "16-mixed",
                "batches": 0,
                "passed": False,
                "checks": {},
                "error": "e",
                "skipped_per_optimizer": {},
                "scale": None,
            },
            "attack_autocast": {
                "attack": "a",
                "attack_steps": 1,
                "n_test": 1,
                "clean_acc": 1.0,
                "eps": [],
                "results": {},
                "verdicts": {},
                "offer_attack_autocast": False,
            },
        }
    )
    assert "skipped: time budget" in report and "FAILED" in report


def test_without_a_gpu_it_asks_for_dry_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA GPU.*--dry-run"):
        gpu_check.main([])


def test_bad_method_names_are_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--methods", "afd,sgd"])
    assert "--methods afd,sgd: choose from nt,at,trades,afd" in capsys.readouterr().err

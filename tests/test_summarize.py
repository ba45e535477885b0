"""afd-summarize on a real small sweep made here: two seeds of one recipe, one run evaluated elsewhere."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from afd_lightning import evaluate
from afd_lightning.summarize import cli as summarize

from helpers import zygote
from helpers.compose import REPO
from helpers.evaluation import compose_eval

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """`train.py -m` over two seeds (a few batches of NT on digits), and an FGSM evaluation of one checkpoint."""
    root = tmp_path_factory.mktemp("sweep")
    train = [
        sys.executable,
        "train.py",
        "-m",
        "experiment=paper_digits_nt",
        "seed=0,1",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3",
        "+trainer.limit_val_batches=1",
        "dataset.meta.eval_attack_steps=2",
        f"hydra.sweep.dir={root}",
    ]
    zygote.run(train, cwd=REPO, env=ENV, check=True)
    runs = sorted(p.parent for p in root.glob("*/metrics.json"))
    assert len(runs) == 2
    # the evaluation lies outside the run folders: it is matched through the checkpoint it names (made in this
    # process, as eval.py would: a second process would add only its start-up)
    overrides = [
        f"ckpt_path={runs[0]}/checkpoints/last.ckpt",
        "attack=fgsm",
        "n_samples=20",
        "plots=false",
        "analyses=false",
        "threads=1",
    ]
    evaluate.run(compose_eval(overrides, root / "evaluations" / "seed0"))
    return root, runs


@pytest.mark.slow
def test_summary_of_a_sweep(sweep, tmp_path):
    root, runs = sweep
    rows = summarize.run(root, out_dir=tmp_path)
    assert len(rows) == 1
    row = rows[0]
    assert (row["method"], row["dataset"], row["network"], sorted(row["seeds"])) == ("NT", "digits", "RN5", [0, 1])
    assert row["recipe"].startswith("paper_digits_nt") and "seed" not in row["recipe"]
    # mean and sample std of the two runs' own metrics.json, in %
    for key in ("test/acc_clean", "test/acc_adv"):
        values = [100 * json.loads((r / "metrics.json").read_text())[key] for r in runs]
        stat = row["columns"][key]
        assert stat["n"] == 2
        assert stat["mean"] == pytest.approx(statistics.fmean(values), abs=1e-3)
        assert stat["std"] == pytest.approx(statistics.stdev(values), abs=1e-3)
    # the evaluation (FGSM at the Table 1 eps, clean) reached the seed-0 run only
    results = json.loads(next((root / "evaluations").rglob("results.json")).read_text())
    model = next(iter(results["models"].values()))
    assert row["columns"]["clean"] == {
        "mean": pytest.approx(100 * model["clean_accuracy"], abs=1e-3),
        "std": None,
        "n": 1,
        "values": [pytest.approx(100 * model["clean_accuracy"], abs=1e-3)],
    }
    assert row["columns"]["fgsm"]["n"] == 1 and "pgd_linf" not in row["columns"]
    assert row["paper"] is None  # no digits row in the paper
    # the three files
    md = (tmp_path / "summary.md").read_text()
    assert "| NT | paper_digits_nt" in md and "(n=1)" in md and "±" in md
    with (tmp_path / "summary.csv").open() as f:
        (line,) = list(csv.DictReader(f))
    assert float(line["test/acc_clean_mean"]) == pytest.approx(row["columns"]["test/acc_clean"]["mean"])
    assert json.loads((tmp_path / "summary.json").read_text())["evaluations_matched"] == 1


@pytest.mark.slow
def test_paper_numbers_beside_a_paper_dataset(sweep, tmp_path):
    """A copy of the sweep relabelled MNIST gets Table 1's NT row (RN5) beside it."""
    root, _ = sweep
    copy = tmp_path / "mnist_sweep"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("*.ckpt", "evaluations"))
    for cfg_path in copy.glob("*/.hydra/config.yaml"):
        cfg = OmegaConf.load(cfg_path)
        cfg.dataset.meta.name = "mnist"
        OmegaConf.save(cfg, cfg_path)
    rows = summarize.run(copy, out_dir=tmp_path / "out")
    assert rows[0]["paper"]["clean"] == "98.81±0.03" and rows[0]["paper"]["pgd_linf"] == "2.03±0.23"
    assert "| NT (paper) | Table 1 | mnist |" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.slow
def test_cli_and_clear_errors(sweep, tmp_path, capsys):
    root, _ = sweep
    assert summarize.main([str(root), "--out", str(tmp_path / "cli")]) == 0
    assert "paper_digits_nt" in capsys.readouterr().out and (tmp_path / "cli" / "summary.md").is_file()
    assert summarize.main([str(tmp_path / "missing")]) == 1
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert summarize.main([str(tmp_path / "empty")]) == 1
    assert "no training runs" in capsys.readouterr().err
    # the module entry point is the same program
    out = subprocess.run(
        [sys.executable, "-m", "afd_lightning.summarize.cli", str(tmp_path / "empty")],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "no training runs" in out.stderr


@pytest.mark.slow  # wandb.init starts its service process: tens of seconds on a busy CPU
def test_wandb_table_offline(sweep, tmp_path):
    pytest.importorskip("wandb")
    root, _ = sweep
    summarize.run(root, out_dir=tmp_path, wandb_mode="offline")
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].rglob("*.wandb"))

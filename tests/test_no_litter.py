"""A command that fails before doing any work prints its error once and leaves nothing behind: no run directory,
no folders above it, no marker file in an existing run directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from afd_lightning.process.cli import remove_if_only_own_logs

from helpers import zygote

REPO = Path(__file__).resolve().parents[1]


def _train(args, cwd):
    return _command("train.py", args, cwd)


def _command(script, args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "AFD_LOG_DIR": str(cwd / "logs")}
    return zygote.run([str(REPO / script), *args], cwd=cwd, env=env, timeout=300)


def _tree(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``folder``, with the size and modification time of each file (a folder's own time changes
    when the run's lock file comes and goes: the lock is taken before the directory is checked, and released)."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.slow
def test_a_wrong_override_prints_once_and_leaves_no_folder_behind(tmp_path):
    # A value only the method's constructor refuses passes the preflight: by then Hydra made
    # logs/digits/afd/<date>/, and the run directory's checks wrote its .hydra/ record and train.log.
    proc = _train(["threads=1", "logger=csv", "method.cls_loss=bogus"], tmp_path)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert output.count("method.cls_loss='bogus' is not one of") == 1, output
    assert list(tmp_path.iterdir()) == []  # not the run directory, not logs/digits/afd/ above it


def test_only_own_logs_rule(tmp_path):
    start = time.time()
    own = tmp_path / "own"
    (own / ".hydra").mkdir(parents=True)
    (own / ".hydra" / "config.yaml").write_text("a: 1\n")
    # dated from `start` itself: time.strftime() with no time reads the kernel's coarse clock (time(NULL)), which
    # can still say the previous second a few ms after time.time() passed it (a flaky failure, seen once)
    (own / "train.log").write_text(time.strftime("[%Y-%m-%d %H:%M:%S,000][x][ERROR] - boom\n", time.localtime(start)))
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


def test_a_refused_rerun_adds_nothing_to_the_run_directory(tmp_path):
    # In process: the run directory's checks are what a rerun meets (train.log is held by the Hydra job's handler,
    # tests/safety/test_links_and_logs.py); before, they left an empty .lock.guard in every run directory.
    from afd_lightning.run.rundir import RunDirectoryError
    from afd_lightning.train import run as train_run

    from helpers.compose import compose_train

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "train.log").write_text("[2026-01-01 00:00:00,000][x][INFO] - the first run\n")
    (run / "metrics.json").write_text("{}\n")
    before = _tree(tmp_path)
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        train_run(compose_train(["method=nt"], run))
    assert _tree(tmp_path) == before  # no .lock.guard, no lock, no record


@pytest.mark.slow
def test_a_refused_export_evaluation_writes_nothing(tmp_path):
    from afd_lightning.share.export import export

    from helpers.crafted import genuine_parts, write

    folder = export(write(tmp_path / "nt.ckpt", *genuine_parts("nt")), tmp_path / "exported")
    work = tmp_path / "work"
    work.mkdir()
    before = _tree(tmp_path)
    proc = _command("eval.py", [f"ckpt_path={folder}", "dataset=mnist", "threads=1"], work)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and output.count("error:") == 1
    assert f"dataset=mnist but {folder} was trained on 'digits'" in output and "cross_dataset=true" in output
    assert _tree(tmp_path) == before  # no logs/, no eval folder, the export untouched


@pytest.mark.slow
def test_an_evaluation_with_output_dir_leaves_one_folder_with_its_log(tmp_path):
    """eval.py output_dir=X: the log goes beside the results in X, and the folder Hydra made for the run
    (``<run>/eval/<suite>-<date>``) is not left behind empty or holding the log alone."""
    from helpers.crafted import genuine_parts, write

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = write(run / "checkpoints" / "last.ckpt", *genuine_parts("nt"))
    out = tmp_path / "out"
    proc = _command(
        "eval.py",
        [
            f"ckpt_path={ckpt}",
            "attack=fgsm",
            "n_samples=8",
            "analyses=false",
            "plots=false",
            "progress=false",
            "threads=1",
            "workers=1",
            f"output_dir={out}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "results.json").is_file() and "fgsm" in (out / "evaluate.log").read_text()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]  # no eval/ folder next to the checkpoints

"""Issue 17, case 7 (rest) and 9 (rest): linked folders, figures, AutoAttack's log and the job log.

- a ``csv/`` or ``checkpoints/`` folder that is a symbolic link in a run directory, and a linked ``eval/``
  or output folder of an evaluation, are refused before anything is written;
- a figure and ``autoattack.log`` are never written through a link planted in their place;
- a refused start leaves an existing ``train.log`` byte-identical (RunLogFileHandler; end to end in
  ``test_files_and_runs.py::test_a_refused_resume_leaves_the_old_hydra_record_byte_identical``);
- a real SIGTERM during ``trainer.test`` (not the simulated flag) exits 143 with no ``metrics.json``.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from afd_lightning import train as train_mod  # noqa: E402
from afd_lightning.evaluation.attacks.autoattack import log_to  # noqa: E402
from afd_lightning.evaluation.report import plots, writer  # noqa: E402
from afd_lightning.files.writer import CSVLogger, RunLogFileHandler, SymlinkRefusedError  # noqa: E402
from afd_lightning.process.cli import remove_if_only_own_logs  # noqa: E402
from afd_lightning.run import rundir  # noqa: E402

from helpers import zygote  # noqa: E402
from helpers.compose import FAST, REPO, compose_train  # noqa: E402

ONE_BATCH = ["method=nt", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1"]


@pytest.fixture
def outside(tmp_path):
    """A folder outside every run directory, with one file whose bytes must never change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("precious\n")
    return folder


def untouched(folder) -> bool:
    return (
        sorted(p.name for p in folder.iterdir()) == ["precious.txt"]
        and (folder / "precious.txt").read_text() == "precious\n"
    )


# ------------------------------------------------------------------ linked folders
@pytest.mark.parametrize("folder", ["csv", "checkpoints"])
def test_a_linked_run_folder_is_refused_before_anything_is_written(tmp_path, outside, folder):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / folder).symlink_to(outside, target_is_directory=True)
    with pytest.raises(SymlinkRefusedError, match=rf"{folder} is a symbolic link"):
        train_mod.run(compose_train(ONE_BATCH, run_dir))
    assert untouched(outside)
    assert sorted(p.name for p in run_dir.iterdir()) == [folder]  # no lock, no record, nothing else


def test_the_lock_makes_no_marker_file_and_never_uses_a_planted_guard_link(tmp_path, outside):
    # The OS lock is taken on the run directory itself (flock): an old `.lock.guard` link is never opened.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock.guard").symlink_to(outside / "precious.txt")
    lock = rundir.RunLock(run_dir)
    lock.acquire()
    assert untouched(outside) and (run_dir / ".lock").is_file()
    lock.release()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock.guard"]


def test_the_csv_logger_refuses_a_linked_folder(tmp_path, outside):
    (tmp_path / "csv").symlink_to(outside, target_is_directory=True)
    logger = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    with pytest.raises(SymlinkRefusedError, match=r"csv is a symbolic link"):
        logger.log_metrics({"train/loss": 1.0}, step=0)
    assert untouched(outside)


@pytest.mark.parametrize("linked", ["eval", "output"])
def test_a_linked_eval_or_output_folder_is_refused_before_anything_is_written(tmp_path, outside, linked):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if linked == "eval":
        (run_dir / "eval").symlink_to(outside, target_is_directory=True)
    else:
        (run_dir / "eval").mkdir()
        (run_dir / "eval" / "quick-1").symlink_to(outside, target_is_directory=True)
    (outside / "results.json").write_text("{}")  # an earlier output: start() would move it to stale/
    with pytest.raises(SymlinkRefusedError, match=r"is a symbolic link"):
        writer.start(run_dir / "eval" / "quick-1")
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt", "results.json"]


def test_cleaning_up_after_a_refused_evaluation_leaves_a_linked_eval_folder_alone(tmp_path):
    empty_outside = tmp_path / "empty_outside"
    (empty_outside / "quick-1").mkdir(parents=True)  # what Hydra made through the link before the refusal
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval").symlink_to(empty_outside, target_is_directory=True)
    assert remove_if_only_own_logs(tmp_path / "run" / "eval" / "quick-1", start=time.time() - 60)
    assert (tmp_path / "run" / "eval").is_symlink() and empty_outside.is_dir()


# ------------------------------------------------------------------ figures and AutoAttack's log
def test_a_figure_is_never_written_through_a_link(tmp_path, outside):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "accuracy_vs_eps.png").symlink_to(outside / "precious.txt")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    with pytest.raises(SymlinkRefusedError, match=r"accuracy_vs_eps\.png is a symbolic link"):
        plots._save(fig, out / "accuracy_vs_eps.png")
    assert untouched(outside) and fig.number not in plt.get_fignums()  # the figure is closed either way
    (out / "accuracy_vs_eps.png").unlink()
    fig, ax = plt.subplots()
    plots._save(fig, out / "accuracy_vs_eps.png")
    assert (out / "accuracy_vs_eps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.iterdir()] == ["accuracy_vs_eps.png"]  # no temporary file left


def test_autoattack_log_is_never_appended_through_a_link(tmp_path, outside):
    path = tmp_path / "autoattack.log"
    path.symlink_to(outside / "precious.txt")
    with (
        pytest.raises(SymlinkRefusedError, match=r"autoattack\.log is a symbolic link"),
        log_to(path, "APGD-CE eps=0.3"),
    ):
        logging.getLogger("auto-attack").debug("must not reach the outside file")
    assert untouched(outside)
    path.unlink()
    for eps in ("0.1", "0.3"):
        with log_to(path, f"APGD-CE eps={eps}"):
            logging.getLogger("auto-attack").debug("a line")
    lines = path.read_text().splitlines()
    assert [line.split(" ", 2)[-1] for line in lines] == [
        "=== APGD-CE eps=0.1",
        "a line",
        "=== APGD-CE eps=0.3",
        "a line",
    ]


# ------------------------------------------------------------------ the job log of a refused start
def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("afd", logging.INFO, __file__, 0, msg, None, None)


def test_the_run_log_holds_lines_until_the_checks_pass(tmp_path):
    old_log = tmp_path / "old" / "train.log"
    old_log.parent.mkdir()
    old_log.write_bytes(b"[2020-01-01 00:00:00][old run] - epoch 9\n")
    before = old_log.read_bytes()
    refused = RunLogFileHandler(old_log)
    refused.handle(_record("refused: run directory already holds a run"))
    refused.close()  # never released (a refused start): the existing log keeps its bytes
    assert old_log.read_bytes() == before

    resumed = RunLogFileHandler(old_log)
    resumed.handle(_record("resuming"))
    assert old_log.read_bytes() == before
    resumed.open_log()
    resumed.handle(_record("epoch 10"))
    resumed.close()
    assert old_log.read_bytes() == before + b"resuming\nepoch 10\n"

    fresh = tmp_path / "fresh" / "train.log"
    fresh.parent.mkdir()
    failed = RunLogFileHandler(fresh)
    failed.handle(_record("error: a config error"))
    failed.close()  # a fresh directory keeps a failed start's lines
    assert fresh.read_text() == "error: a config error\n"


def test_the_run_log_is_never_opened_through_a_link(tmp_path, outside):
    (tmp_path / "train.log").symlink_to(outside / "precious.txt")
    handler = RunLogFileHandler(tmp_path / "train.log")
    handler.handle(_record("a line"))
    with pytest.raises(SymlinkRefusedError, match=r"train\.log is a symbolic link"):
        handler.open_log()
    handler.close()
    assert untouched(outside)


# ------------------------------------------------------------------ a real SIGTERM during trainer.test
@pytest.mark.slow  # one train.py process
def test_a_real_sigterm_during_test_exits_143_without_metrics(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO / "tests")}
    proc = zygote.run(
        [
            "train.py",
            *FAST,
            *ONE_BATCH,
            "+trainer.limit_test_batches=1",
            "+callbacks.sigterm._target_=helpers.signals.SigtermAtTestStart",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # fit finished: the signal came during the test
    assert not (run_dir / "metrics.json").exists() and not (run_dir / ".lock").exists()


@pytest.mark.slow  # one eval.py process, refused before any checkpoint is read
def test_eval_py_with_a_linked_eval_folder_writes_nothing_there(tmp_path, outside):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"never read")
    (run_dir / "eval").symlink_to(outside, target_is_directory=True)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = zygote.run(
        ["eval.py", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "suite=quick"], cwd=REPO, env=env, timeout=300
    )
    assert proc.returncode == 1 and "eval is a symbolic link" in proc.stderr, proc.stderr[-3000:]
    assert untouched(outside)  # no results, no .hydra record, no evaluate.log: the folder Hydra made is gone too

"""Checks before torch is imported: fast, printed once, with did-you-mean, and no run directory left behind."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from afd_lightning.config.preflight import PreflightError, check
from afd_lightning.config.suggest import did_you_mean

REPO = Path(__file__).resolve().parents[1]


def _cli(script: str, args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """(result, wall seconds, CPU seconds of the child: user + system, independent of the machine's load)."""
    env = {**os.environ, "AFD_LOG_DIR": str(cwd / "logs"), "PYTHONPATH": str(REPO / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, wall, cpu


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("train.py", ["dataset.meta.eps=-1"], "dataset.meta.eps=-1: the attack budget ε must be a number >= 0"),
        ("train.py", ["trainer.max_epoch=3"], "no option trainer.max_epoch; did you mean trainer.max_epochs?"),
        ("train.py", ["ckpt_path=missing.ckpt"], "the checkpoint to resume from missing.ckpt does not exist"),
        ("eval.py", ["ckpt_path=[missing.ckpt]"], "the checkpoint missing.ckpt does not exist"),
        ("train.py", ["metod=afd"], "no option metod; did you mean method?"),
        ("train.py", ["dataset=mnsit"], "no option dataset=mnsit; did you mean dataset=mnist?"),
    ],
)
@pytest.mark.slow
def test_bad_command_answers_fast_once_and_leaves_nothing(tmp_path, script, args, expected):
    proc, seconds, cpu = _cli(script, [*args, "threads=1"], tmp_path)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert expected in output
    assert output.count("error:") == 1, output  # one line, not a log line plus error:
    assert "import torch" not in output
    # Measured by hand: 0.9-1.4 s wall at load 5 on 2 cores, 1.0-1.4 s CPU (importing torch alone takes ~5 s CPU).
    # The CPU time does not depend on the machine's load; the wall-clock bound is loose for a loaded CI machine.
    assert cpu < 3, f"{cpu:.1f} s of CPU"
    assert seconds < 10, f"{seconds:.1f} s"
    assert list(tmp_path.iterdir()) == []  # no run directory, no logs/


@pytest.mark.slow
def test_sweep_overrides_are_checked_on_their_first_value():
    with pytest.raises(PreflightError, match="did you mean trainer.max_epochs"):
        check("train", ["-m", "method=nt,at", "trainer.max_epoch=3"])
    check("train", ["-m", "method=nt,at", "seed=range(2)", "trainer.max_epochs=1"])  # a valid sweep passes


def test_commands_that_only_show_something_are_not_checked():
    check("train", ["--cfg", "job", "dataset.meta.eps=-1"])
    check("train", ["--help"])


@pytest.mark.slow
def test_added_key_the_target_does_not_take():
    with pytest.raises(
        PreflightError, match=r"no option method.betta; did you mean method.beta\?.*takes no argument betta"
    ):
        check("train", ["method=trades", "+method.betta=3"])


def test_did_you_mean_without_a_close_candidate():
    assert did_you_mean("trainer.zzz", "zzz", ["max_epochs"]) == "no option trainer.zzz"


def test_single_checkpoint_evaluation_goes_beside_its_run(tmp_path):
    from afd_lightning.config.resolvers import _eval_dir

    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    stamp = "2026-01-01_00-00-00"
    assert _eval_dir(ckpt, "logs", None, "quick", stamp) == str(tmp_path / "run" / "eval" / f"quick-{stamp}")
    assert _eval_dir([ckpt], "logs", "fgsm", "paper", stamp).endswith(f"run/eval/fgsm-{stamp}")
    assert _eval_dir([ckpt, ckpt], "logs", None, "quick", stamp) == f"logs/eval/{stamp}"  # several: the log dir
    assert _eval_dir("loose.ckpt", "logs", None, "quick", stamp) == f"logs/eval/{stamp}"


@pytest.mark.parametrize(
    ("root", "args", "expected"),
    [
        ("train", ["metod=afd"], r"^no option metod; did you mean method\?$"),
        ("train", ["metod.lr=0.1"], r"^no option metod\.lr; did you mean method\.lr\?$"),
        (
            "train",
            ["+metod=afd"],
            r"^no option metod; did you mean method\? \(\+metod would add a key that nothing reads\)",
        ),
        ("train", ["zzzqq=1"], r"^no option zzzqq; afd-train has these keys and config groups: attack, callbacks, "),
        ("train", ["+seed=3"], r"^seed is an option already: write seed=\.\.\. without the \+"),
        ("train", ["dataset=mnsit"], r"did you mean dataset=mnist\? \(dataset options: cifar10, cifar100, digits, "),
        ("train", ["method=atd"], r"^no option method=atd; did you mean method=at\?"),
        ("train", ["experiment=paper_digits_afdd"], r"did you mean experiment=paper_digits_afd\?"),
        ("train", ["attack@eval_attack=pgd_linff"], r"^no option attack@eval_attack=pgd_linff; did you mean "),
        ("eval", ["ckpt_path=x.ckpt", "suite=quikc"], r"^no option suite=quikc; did you mean suite=quick\?"),
        ("eval", ["dataset=mnsit"], r"no option dataset=mnsit; did you mean dataset=mnist\? \(shipped datasets: "),
    ],
)
def test_top_level_keys_groups_and_options_get_a_did_you_mean(root, args, expected):
    with pytest.raises(PreflightError, match=expected):
        check(root, args)


@pytest.mark.slow
def test_keys_of_ones_own_and_the_dataset_check_pass_the_preflight(tmp_path):
    check("train", ["+my_note=hello", "trainer.max_epochs=1"])  # nothing close to it: a key of one's own
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    # afd-eval's dataset= names a shipped dataset; whether it is the checkpoint's is decided once it is loaded
    assert check("eval", [f"ckpt_path={ckpt}", "+dataset=mnist", "suite=quick"]).parent == tmp_path / "run" / "eval"


@pytest.mark.slow
def test_a_linked_eval_folder_is_refused_before_hydra_makes_anything(tmp_path):
    # Hydra would make eval/quick-<date>/ in the link's target and open evaluate.log there before the task ran.
    outside = tmp_path / "outside"
    outside.mkdir()
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    (tmp_path / "run" / "eval").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PreflightError, match=r"run/eval is a symbolic link"):
        check("eval", [f"ckpt_path={ckpt}", "suite=quick"])
    work = tmp_path / "work"
    work.mkdir()
    proc, _, _ = _cli("eval.py", [f"ckpt_path={ckpt}", "suite=quick", "threads=1"], work)
    assert proc.returncode == 1 and "run/eval is a symbolic link" in proc.stdout + proc.stderr
    assert list(outside.iterdir()) == [] and list(work.iterdir()) == []  # no evaluate.log, no folder, no logs/


def test_folders_a_failed_start_added_are_removed_at_exit_if_still_empty(tmp_path):
    from afd_lightning.config.preflight import _folders_to_make, _remove_if_still_empty

    (tmp_path / "logs").mkdir()
    planned = tmp_path / "logs" / "digits" / "afd" / "2026-01-01_00-00-00"
    made = _folders_to_make(planned)
    assert made == [planned, planned.parent, planned.parent.parent]  # logs/ existed: it is not among them
    (planned.parent / "2026-01-01_00-00-01").mkdir(parents=True)  # the run's own folder, a second later
    (planned.parent / "2026-01-01_00-00-01" / "metrics.json").write_text("{}")
    _remove_if_still_empty(made)
    assert (planned.parent / "2026-01-01_00-00-01" / "metrics.json").is_file()  # a folder holding anything stays
    (planned.parent / "2026-01-01_00-00-01" / "metrics.json").unlink()
    (planned.parent / "2026-01-01_00-00-01").rmdir()  # what the entry point does after a failed start
    _remove_if_still_empty(made)
    assert list((tmp_path / "logs").iterdir()) == []

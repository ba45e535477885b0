"""A built wheel (not the editable checkout) runs afd-train and afd-eval from any folder.

The wheel is built from a copy of the sources and installed ``--no-deps`` into a fresh virtual
environment that borrows this venv's dependencies through a ``.pth`` file (so torch is not
installed twice, and the checkout's editable ``src/`` is *not* on the path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AFD_LOG_DIR", "AFD_DATA_DIR")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for folder in ("src", "conf"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        cwd=root,
    )
    wheel = next((root / "dist").glob("afd_lightning-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        cwd=root,
    )
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return wheel, venv, elsewhere


def test_wheel_ships_the_configs(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "afd_lightning/conf/train/train.yaml",
        "afd_lightning/conf/train/method/afd.yaml",
        "afd_lightning/conf/train/dataset/digits.yaml",
        "afd_lightning/conf/eval/eval.yaml",
        "afd_lightning/conf/eval/suite/paper.yaml",
        "afd_lightning/py.typed",
    ):
        assert path in names, path


def test_wheel_ships_every_package_and_config():
    """pyproject lists the packages by hand (conf/ is mapped into afd_lightning.conf): nothing may be left out."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    src = REPO / "src"
    on_disk = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    on_disk |= {
        "afd_lightning.conf." + ".".join(p.parent.relative_to(REPO / "conf").parts)
        for p in (REPO / "conf").rglob("__init__.py")
    }
    on_disk = {name.rstrip(".") for name in on_disk}
    assert on_disk == listed
    assert not list((REPO / "src" / "afd_lightning").rglob("*.yaml")), "configs belong in the top-level conf/"


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    _, venv, elsewhere = installed
    where = _run([str(venv / "bin" / "python"), "-c", "import afd_lightning; print(afd_lightning.__file__)"], elsewhere)
    assert str(venv) in where and str(REPO / "src") not in where


@pytest.mark.slow
def test_afd_train_and_afd_eval_run_from_another_folder(installed):
    _, venv, elsewhere = installed
    job = _run([str(venv / "bin" / "afd-train"), "--cfg", "job"], elsewhere)
    assert "afd_lightning.methods.AFD" in job and "DigitsDataModule" in job

    _run(
        [
            str(venv / "bin" / "afd-train"),
            "logger=csv",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=1",
            "+trainer.limit_val_batches=1",
            "+trainer.limit_test_batches=1",
            "trainer.enable_progress_bar=false",
            "dataset.meta.train_attack_steps=1",
            "dataset.meta.eval_attack_steps=1",
            "hydra.run.dir=logs/one_batch",
        ],
        elsewhere,
    )
    run_dir = elsewhere / "logs" / "one_batch"  # outputs go under the folder it was started from
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "test/acc_clean" in json.loads((run_dir / "metrics.json").read_text())

    _run(
        [
            str(venv / "bin" / "afd-eval"),
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            "attack=fgsm",
            "n_samples=8",
            "analyses=false",
            "plots=false",
            "progress=false",
            "output_dir=eval_out",
        ],
        elsewhere,
    )
    assert (elsewhere / "eval_out" / "COMPLETE").is_file()


def test_a_users_config_folder_adds_presets(installed, tmp_path):
    """``--config-dir`` adds the user's own folder to the search path of the installed configs."""
    _, venv, elsewhere = installed
    mine = tmp_path / "my_conf" / "experiment"
    mine.mkdir(parents=True)
    (mine / "my_afd.yaml").write_text("# @package _global_\nseed: 1234\nmethod:\n  gan_loss: hinge\n")
    job = _run(
        [
            str(venv / "bin" / "afd-train"),
            "--config-dir",
            str(tmp_path / "my_conf"),
            "experiment=my_afd",
            "--cfg",
            "job",
        ],
        elsewhere,
    )
    assert "seed: 1234" in job and "gan_loss: hinge" in job

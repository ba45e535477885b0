"""The ``threads`` setting: afd_lightning.process.threads.set_threads, its auto rule, and both entry points applying it first."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from afd_lightning.config.paths import config_dir
from afd_lightning.errors import ConfigError
from afd_lightning.process import threads
from afd_lightning.process.threads import set_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("value, want", [(1, 1), ("2", 2), (3, 3)])
def test_a_number_is_set(restore_threads, value, want):
    assert set_threads(value) == want and torch.get_num_threads() == want


@pytest.mark.parametrize("value", ["x", 0, -2, 1.5, "1.0", True, None])
def test_bad_values_are_refused(restore_threads, value):
    with pytest.raises(ConfigError, match="threads=.* must be auto or a positive integer"):
        set_threads(value)


DIGITS = {"meta": {"name": "digits", "family": "digits", "channels": 1, "image_size": 8}}
MNIST10K = {"meta": {"name": "mnist10k", "family": "mnist", "channels": 1, "image_size": 28}}
CIFAR = {"meta": {"name": "cifar10", "family": "cifar", "channels": 3, "image_size": 32}}


@pytest.mark.parametrize("dataset, want", [(DIGITS, 1), (MNIST10K, 1), (CIFAR, "cores"), (None, "cores")])
def test_auto_is_a_function_of_the_job_and_the_machine(restore_threads, monkeypatch, dataset, want):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    want = 2 if want == "cores" else want
    assert set_threads("auto", dataset) == want and torch.get_num_threads() == want


def test_auto_does_not_read_the_load(restore_threads, monkeypatch):
    """The same command on a quiet and a busy machine: nothing about other processes is read."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    import builtins

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        assert not str(path).startswith("/proc"), f"threads=auto read {path}"
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    first = set_threads("auto", CIFAR)
    with ProcessPoolBusy():
        second = set_threads("auto", CIFAR)
    assert first == second == 2


class ProcessPoolBusy:
    """Keeps one other process busy for the duration of the block."""

    def __enter__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def test_omp_num_threads_wins_and_bounds_stored_counts(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert set_threads("auto", CIFAR) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert threads.bounded_stored_threads(24) == (1, "the checkpoint's 24 is more than the 1 this process may use")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.bounded_stored_threads(2) == (2, None)
    assert threads.bounded_stored_threads(10**9)[0] == 2


@pytest.mark.parametrize("root, name", [("train", "train"), ("eval", "eval")])
def test_configs_default_to_auto(root, name):
    with initialize_config_dir(config_dir=str(config_dir(root)), version_base="1.3"):
        cfg = compose(config_name=name, overrides=[] if root == "train" else ["ckpt_path=x.ckpt"])
    assert cfg.threads == "auto"


class Applied(Exception):
    pass


def test_entry_points_apply_threads_first(monkeypatch):
    """train.run and evaluate.run call set_threads with cfg.threads before doing anything else."""
    from omegaconf import OmegaConf

    from afd_lightning import evaluate, train

    seen = []

    def fake(setting, dataset=None):
        seen.append(setting)
        raise Applied

    monkeypatch.setattr(threads, "set_threads", fake)  # train.run imports it at call time
    monkeypatch.setattr(evaluate, "set_threads", fake)
    cfg = OmegaConf.create({"threads": 3})  # nothing else: any other first step would fail differently
    for run in (train.run, evaluate.run):
        with pytest.raises(Applied):
            run(cfg)
    assert seen == [3, 3]


@pytest.mark.slow
def test_the_same_command_quiet_and_beside_a_busy_process_gives_identical_weights(
    tmp_path, restore_threads, monkeypatch
):
    """Issue 28.5: threads=auto once took the load at start-up into account, and 2 epochs then differed by 2.98."""
    from afd_lightning.store.checkpoint import load_checkpoint
    from afd_lightning.train import run

    from helpers.compose import compose_train

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    limits = ["+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2"]
    for name in ("quiet", "busy"):
        cfg = compose_train(["method=afd", *limits, "threads=auto"], tmp_path / name)
        if name == "busy":
            with ProcessPoolBusy():
                run(cfg)
        else:
            run(cfg)
    metrics = [json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("quiet", "busy")]
    for m in metrics:
        m.pop("provenance")
        m.pop("test/checkpoint")
    assert metrics[0] == metrics[1]
    weights = [load_checkpoint(tmp_path / n / "checkpoints" / "last.ckpt")["state_dict"] for n in ("quiet", "busy")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

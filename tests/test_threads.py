"""The ``threads`` setting: afd_lightning.threads.set_threads, its auto rule, and both entry points applying it first."""

from __future__ import annotations

import os

import pytest
import torch
from hydra import compose, initialize_config_dir

from afd_lightning import threads
from afd_lightning.config_paths import config_dir
from afd_lightning.errors import ConfigError
from afd_lightning.threads import set_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class FakeProcStat:
    """Stands in for pathlib.Path in afd_lightning.threads: /proc/stat reads give ``busy_ticks`` more busy time each time."""

    def __init__(self, busy_ticks: int):
        self.busy_ticks, self.reads = busy_ticks, 0

    def __call__(self, path):
        assert str(path) == "/proc/stat"
        return self

    def read_text(self):
        busy = self.busy_ticks * self.reads
        self.reads += 1
        return f"cpu  {busy} 0 0 1000 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n"


@pytest.mark.parametrize("value, want", [(1, 1), ("2", 2), (3, 3)])
def test_a_number_is_set(restore_threads, value, want):
    assert set_threads(value) == want and torch.get_num_threads() == want


@pytest.mark.parametrize("value", ["x", 0, -2, 1.5, "1.0", True, None])
def test_bad_values_are_refused(restore_threads, value):
    with pytest.raises(ConfigError, match="threads=.* must be auto or a positive integer"):
        set_threads(value)


@pytest.mark.parametrize("others_cores, want", [(0.0, 2), (1.0, 1), (2.0, 1)])
def test_auto_leaves_the_cores_others_use(restore_threads, monkeypatch, others_cores, want):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    # 0.2 s of sampling: others_cores * 0.2 s of busy CPU time, in clock ticks
    fake = FakeProcStat(round(others_cores * 0.2 * os.sysconf("SC_CLK_TCK")))
    monkeypatch.setattr(threads, "Path", fake)
    assert set_threads("auto") == want and torch.get_num_threads() == want
    assert fake.reads == 2


def test_auto_never_raises_an_earlier_choice_and_obeys_omp_num_threads(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "Path", FakeProcStat(0))
    torch.set_num_threads(1)
    assert set_threads("auto") == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "Path", None)  # not even read
    torch.set_num_threads(2)
    assert set_threads("auto") == 2


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

    def fake(setting):
        seen.append(setting)
        raise Applied

    monkeypatch.setattr(threads, "set_threads", fake)  # train.run imports it at call time
    monkeypatch.setattr(evaluate, "set_threads", fake)
    cfg = OmegaConf.create({"threads": 3})  # nothing else: any other first step would fail differently
    for run in (train.run, evaluate.run):
        with pytest.raises(Applied):
            run(cfg)
    assert seen == [3, 3]

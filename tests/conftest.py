"""Fixtures every test can use: tiny composed configs, the in-process ``runner``, the evaluation checkpoints.

The helpers themselves live in the ``tests/helpers`` package (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import os

import pytest
import torch

from helpers.compose import compose_train
from helpers.evaluation import nt2_ckpt, nt_ckpt  # noqa: F401  (session fixtures, trained on first use)
from helpers.training import runner  # noqa: F401  (fixture)

# The test networks are tiny: one thread beats two (thread barriers cost more than they save,
# seconds per call when the cores are shared). DDP tests run in their own processes.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts with one torch thread, whatever an earlier test in this process set (an in-process
    evaluation with ``threads=auto`` takes every core): a test's time does not depend on which ran before it."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture
def train_cfg(tmp_path):
    """Factory: ``train_cfg(["method=at"])`` -> composed config writing under tmp_path."""

    def make(overrides=(), fast: bool = True):
        return compose_train(list(overrides), tmp_path / "run", fast=fast)

    return make


def pytest_collection_modifyitems(config, items):
    """In pytest-xdist workers (``make test``: ``-n N --dist loadfile``), the files holding slow tests first.

    Files are handed out in collection order; a long file (subprocesses, DDP, resume) handed out last would
    run alone while the other workers idle. Every worker sorts the same way, as xdist requires.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    order = {item.nodeid: i for i, item in enumerate(items)}
    items.sort(key=lambda item: (item.path not in slow_files, order[item.nodeid]))

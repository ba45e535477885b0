"""Fixtures every test can use: tiny composed configs, the in-process ``runner``, the evaluation checkpoints.

The helpers themselves live in the ``tests/helpers`` package (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from helpers.compose import compose_train
from helpers.evaluation import nt2_ckpt, nt_ckpt  # noqa: F401  (session fixtures, trained on first use)
from helpers.training import runner  # noqa: F401  (fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import slow_marks  # noqa: E402  (reads the kept durations)

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


def _seconds_per_file() -> dict[str, float]:
    """Seconds per test file in the last kept full run (`make test-durations`), or nothing if there is none."""
    seconds: dict[str, float] = {}
    if slow_marks.DURATIONS.is_file():
        for test_id, s in slow_marks.durations(slow_marks.DURATIONS.read_text(encoding="utf-8")).items():
            path = test_id.split("::", 1)[0]
            seconds[path] = seconds.get(path, 0.0) + s
    return seconds


def pytest_collection_modifyitems(config, items):
    """In pytest-xdist workers (``make test``: ``-n N --dist loadfile``), the longest files first.

    Files are handed out in collection order, each to the next free worker; a long file handed out last would run
    alone while the other workers idle. Longest first (by the kept durations of the last full run; a file that is
    not in them counts as long when it holds a slow test) packs the files close to evenly. Only the order changes,
    never which tests run. Every worker sorts the same way, as xdist requires.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    kept = _seconds_per_file()
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    rel = {item.path: item.nodeid.split("::", 1)[0] for item in items}

    def seconds(path) -> float:
        return kept.get(rel[path], 30.0 if path in slow_files else 0.0)

    order = {item.nodeid: i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-seconds(item.path), order[item.nodeid]))

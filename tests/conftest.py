"""Fixtures every test can use: tiny composed configs, the in-process ``runner``, the evaluation checkpoints.

The helpers themselves live in the ``tests/helpers`` package (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import pytest
import torch

from helpers.compose import compose_train
from helpers.evaluation import nt2_ckpt, nt_ckpt  # noqa: F401  (session fixtures, trained on first use)
from helpers.training import runner  # noqa: F401  (fixture)

# The test networks are tiny: one thread beats two (thread barriers cost more than they save,
# seconds per call when the cores are shared). DDP tests run in their own processes.
torch.set_num_threads(1)


@pytest.fixture
def train_cfg(tmp_path):
    """Factory: ``train_cfg(["method=at"])`` -> composed config writing under tmp_path."""

    def make(overrides=(), fast: bool = True):
        return compose_train(list(overrides), tmp_path / "run", fast=fast)

    return make

"""Shared fixtures of the evaluation tests: tiny digits checkpoints trained in-process, and eval configs."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest
import torch

from afd_lightning.config.paths import config_dir

from helpers import hydra_cache
from helpers.compose import compose_train

EVAL_CONF = config_dir("eval")
QUIET = ["progress=false", "workers=1"]  # tests that want processes say workers=N


def compose_eval(overrides, output_dir: Path):
    return hydra_cache.compose(EVAL_CONF, "eval", QUIET + [f"output_dir={output_dir}"] + list(overrides))


def _train(tmp_path_factory, name, overrides):
    """Trained once per test session, not once per pytest-xdist worker: the workers share their base folder's
    parent, and the first to take the lock trains while the other waits (the same seed and one thread give the
    same weights in either, so which one trains does not matter)."""
    from afd_lightning.train import run

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    out = root / f"shared-{name}"
    ckpt = out / "checkpoints" / "last.ckpt"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ckpt.is_file():
            if out.exists():  # a worker died while training it: start again
                shutil.rmtree(out)
            run(compose_train(["method=nt", "trainer.max_epochs=4", "test_after_fit=false", *overrides], out))
    return str(ckpt)


@pytest.fixture(scope="session")
def nt_ckpt(tmp_path_factory) -> str:
    """A naturally trained digits ResNet5 (4 epochs, a few seconds): clean ~90%+, no robustness."""
    return _train(tmp_path_factory, "nt", ["seed=0"])


@pytest.fixture(scope="session")
def nt2_ckpt(tmp_path_factory) -> str:
    """A second NT model (another seed): a transfer source, or a second model side by side."""
    return _train(tmp_path_factory, "nt2", ["seed=1"])


class _ZeroGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


class MaskedGradients(torch.nn.Module):
    """The model's exact predictions with zero input gradient: the extreme of a non-differentiable
    input quantisation (x -> round(x * 4) / 4), i.e. gradient masking by construction."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.encoder, self.classifier = model.encoder, model.classifier

    def forward(self, x):
        return self.model(_ZeroGrad.apply(x))

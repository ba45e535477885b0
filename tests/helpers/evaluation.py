"""Shared fixtures of the evaluation tests: tiny digits checkpoints trained in-process, and eval configs."""

from __future__ import annotations

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
    from afd_lightning.train import run

    out = tmp_path_factory.mktemp(name)
    run(compose_train(["method=nt", "trainer.max_epochs=4", "test_after_fit=false", *overrides], out))
    return str(out / "checkpoints" / "last.ckpt")


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

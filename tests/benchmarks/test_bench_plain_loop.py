"""benchmarks/bench_train_step.py's plain PyTorch loop runs each method's own math (no second copy of the losses)."""

from __future__ import annotations

import sys

import pytest
import torch

from helpers.compose import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_train_step  # noqa: E402


@pytest.mark.parametrize("method", ["nt", "at", "trades", "afd"])
@pytest.mark.slow
def test_plain_step_calls_the_methods_math(method, monkeypatch):
    torch.manual_seed(0)
    module, shape, num_classes = bench_train_step.build_method("digits", method, 2, False, False)
    optimizers = bench_train_step.plain_optimizers(module)
    calls = []
    name = "algorithm1" if method == "afd" else "training_losses"
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    step = bench_train_step.plain_step_fn(module, optimizers)
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    x, y = torch.rand(8, *shape[1:]), torch.randint(0, num_classes, (8,))
    accuracy = step(x, y)
    assert calls == [name] and 0.0 <= float(accuracy) <= 1.0
    changed = [k for k, v in module.named_parameters() if not torch.equal(v, before[k])]
    assert any(k.startswith("model.") for k in changed)
    if method == "afd":  # Algorithm 1's three updates: Da's parameters move too
        assert any(k.startswith("discriminator.") for k in changed)

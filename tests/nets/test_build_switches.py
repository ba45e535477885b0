"""model.channels_last and model.compile: throughput switches that must not change the math."""

from __future__ import annotations

import pytest
import torch

from afd_lightning.nets.build import build_model
from afd_lightning.train import build, run

from helpers.compose import compose_train


@pytest.mark.slow
def test_channels_last_model_gives_the_same_logits(tmp_path):
    cfg = compose_train(["dataset=cifar10", "model=resnet18"], tmp_path)
    torch.manual_seed(0)
    plain = build_model(cfg.model).eval()
    cfg.model.channels_last = True
    fast = build_model(cfg.model).eval()
    fast.load_state_dict(plain.state_dict())
    conv = fast.encoder[1][0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            fast(x.contiguous(memory_format=torch.channels_last)), plain(x), rtol=1e-4, atol=1e-5
        )


@pytest.mark.slow
def test_channels_last_training_run(train_cfg):
    cfg = train_cfg(["method=afd", "model.channels_last=true", "+trainer.limit_train_batches=2"])
    metrics = run(cfg)
    assert 0.0 <= metrics["test/acc_adv"] <= 1.0


@pytest.mark.slow
def test_compile_switch_compiles_the_encoder_in_place(tmp_path):
    cfg = compose_train(["model.compile=true"], tmp_path)
    _, method, _ = build(cfg)
    # nn.Module.compile() keeps the module (and its state-dict keys) and swaps in a compiled call.
    assert method.model.encoder._compiled_call_impl is not None
    assert method.model.classifier._compiled_call_impl is None
    assert all(not k.startswith("_orig_mod") for k in method.model.state_dict())

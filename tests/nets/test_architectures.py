"""Shape, embedding and gradient checks for every network factory."""

from __future__ import annotations

import pytest
import torch

from afd_lightning.nets import (
    ImageClassifier,
    lenet,
    preact_resnet18,
    resnet5,
    resnet18,
    wide_resnet,
    wide_resnet34_10,
)

CASES = {
    "resnet5_s1_8x8": (lambda: resnet5(in_channels=1, num_classes=10, stem_stride=1), (1, 8, 8), 10),
    "resnet5_28x28": (lambda: resnet5(in_channels=1, num_classes=10), (1, 28, 28), 10),
    "resnet18_32x32": (lambda: resnet18(in_channels=3, num_classes=10), (3, 32, 32), 10),
    "resnet18_8x8": (lambda: resnet18(in_channels=1, num_classes=4), (1, 8, 8), 4),
    "preact_resnet18_32x32": (
        lambda: preact_resnet18(in_channels=3, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3),
        (3, 32, 32),
        10,
    ),
    "wrn10_1_32x32": (lambda: wide_resnet(in_channels=3, num_classes=7, depth=10, widen_factor=1), (3, 32, 32), 7),
    "lenet_28x28": (lambda: lenet(in_channels=1, num_classes=10, image_size=28), (1, 28, 28), 10),
    "lenet_8x8": (lambda: lenet(in_channels=1, num_classes=10, image_size=8), (1, 8, 8), 10),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow
def test_architecture(name):
    torch.manual_seed(0)
    factory, shape, classes = CASES[name]
    model = factory()
    assert isinstance(model, ImageClassifier)
    x = torch.rand(2, *shape)

    model.train()  # one training-mode pass so BN running stats are non-trivial
    assert model(x).shape == (2, classes)

    model.eval()
    x = x.clone().requires_grad_(True)
    z = model.encoder(x)
    logits = model(x)
    assert z.shape == (2, model.embed_dim)
    assert logits.shape == (2, classes)
    assert torch.allclose(model.classifier(z), logits, atol=1e-6)
    z2, logits2 = model.forward_with_embedding(x)
    assert torch.allclose(z2, z) and torch.allclose(logits2, logits)

    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_embedding_sizes():
    assert resnet18(3, 10).embed_dim == 512
    assert preact_resnet18(3, 10).embed_dim == 512
    assert lenet(1, 10).embed_dim == 1024
    assert wide_resnet(depth=16, widen_factor=2).embed_dim == 128


def test_wrn34_10_parameter_count():
    model = wide_resnet34_10(in_channels=3, num_classes=10)
    n = sum(p.numel() for p in model.parameters())
    assert model.embed_dim == 640
    assert 46.0e6 < n < 46.4e6, n  # 46,160,474 for the Madry/TRADES WRN-34-10


def test_bad_arguments():
    with pytest.raises(ValueError):
        wide_resnet(depth=33)
    with pytest.raises(ValueError):
        lenet(image_size=7)


def test_no_inplace_relu():
    for factory, _, _ in CASES.values():
        for m in factory().modules():
            if isinstance(m, torch.nn.ReLU):
                assert not m.inplace

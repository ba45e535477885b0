"""Each network's size function (afd_lightning/nets/size.py) is exact: it counts what the builder builds.

The loaders refuse a stored network on these closed forms before building it, so a size function that
undercounts would let a large network through: each is compared with the network built on the ``meta``
device (no tensor memory) for arguments that exercise every branch (projection shortcuts, empty and
mismatched stages, normalisation buffers, the embedding's L2 normalisation).
"""

from __future__ import annotations

import inspect

import pytest
import torch

from afd_lightning import nets
from afd_lightning.nets.size import NetworkSize, size_function

CASES = [
    (nets.resnet5, {}),
    (nets.resnet5, {"stem_stride": 1, "width": 5, "block_width": 5, "embed_dim": 7, "mean": [0.1], "std": [0.2]}),
    (nets.resnet5, {"width": 8, "block_width": 8, "normalize_embedding": True, "in_channels": 3}),
    (nets.resnet18, {}),
    (nets.resnet18, {"num_blocks": [3, 1, 0, 2], "planes": [4, 8, 8, 16], "in_channels": 1}),
    (nets.resnet18, {"num_blocks": [5], "planes": [1, 2, 3]}),  # zip() stops at the shorter list
    (nets.resnet18, {"num_blocks": [1, 2, 3, 4, 5], "planes": [2, 3], "normalize_embedding": True}),
    (nets.preact_resnet18, {}),
    (nets.preact_resnet18, {"num_blocks": [3, 1, 2], "planes": [4, 4, 16], "mean": [0, 0, 0], "std": [1, 1, 1]}),
    (nets.wide_resnet, {"depth": 10, "widen_factor": 1}),
    (nets.wide_resnet, {"depth": 22, "widen_factor": 2, "dropout": 0.3, "num_classes": 7}),
    (nets.wide_resnet34_10, {}),
    (nets.lenet, {}),
    (nets.lenet, {"image_size": 8, "embed_dim": 3}),
    (nets.lenet, {"image_size": 33, "in_channels": 3, "mean": [0.5] * 3, "std": [0.2] * 3}),
    (nets.AdversarialDecoder, {"embed_dim": 10, "num_classes": 3}),
    (nets.AdversarialDecoder, {"embed_dim": 10, "num_classes": 3, "num_hidden_layers": 1, "hidden_dim": 5}),
]


def counted(module: torch.nn.Module) -> NetworkSize:
    elements = sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
    return NetworkSize(elements, sum(1 for _ in module.modules()))


@pytest.mark.parametrize(("builder", "kwargs"), CASES, ids=[f"{b.__name__}-{i}" for i, (b, _) in enumerate(CASES)])
@pytest.mark.slow
def test_size_function_counts_what_the_builder_builds(builder, kwargs):
    with torch.device("meta"):
        built = builder(**kwargs)
    assert size_function(builder)(**kwargs) == counted(built)


def test_an_image_classifier_is_sized_from_its_body():
    with torch.device("meta"):
        built = nets.ImageClassifier(nets.resnet5(width=4, block_width=4), 200, 5, [0.5], [0.5])
    body = size_function(nets.resnet5)(width=4, block_width=4)
    assert size_function(nets.ImageClassifier)(body, 200, 5, [0.5], [0.5]) == counted(built)


def test_every_exported_builder_has_a_size_function_with_its_own_signature():
    """A size function is called with a stored config's arguments: it must take exactly the builder's."""
    registered = [getattr(nets, name) for name in nets.__all__ if size_function(getattr(nets, name))]
    assert {b.__name__ for b in registered} >= {
        "resnet5",
        "resnet18",
        "preact_resnet18",
        "wide_resnet",
        "wide_resnet34_10",
        "lenet",
        "AdversarialDecoder",
        "ImageClassifier",
    }
    for builder in registered:
        own = inspect.signature(builder.__init__ if inspect.isclass(builder) else builder).parameters
        sized = inspect.signature(size_function(builder)).parameters
        own_params = [(n, p.default) for n, p in own.items() if n != "self"]
        assert own_params == [(n, p.default) for n, p in sized.items()], builder.__name__


@pytest.mark.parametrize(
    ("builder", "kwargs"),
    [
        (nets.wide_resnet, {"depth": 11}),
        (nets.resnet18, {"planes": []}),
        (nets.resnet18, {"num_blocks": [-1]}),
        (nets.lenet, {"image_size": 4}),
        (nets.resnet5, {"width": 0}),
        (nets.AdversarialDecoder, {"embed_dim": 10, "num_classes": 0}),
    ],
)
def test_a_size_function_refuses_arguments_that_build_no_network(builder, kwargs):
    with pytest.raises(ValueError):
        size_function(builder)(**kwargs)

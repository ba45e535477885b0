"""LeNet-style convolutional network for MNIST-sized inputs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from afd_lightning.nets.base import ImageClassifier
from afd_lightning.nets.size import LEAF, NetworkSize, container, conv, image_classifier, linear, network, positive


def lenet_size(
    in_channels: int = 1,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_size: int = 28,
    embed_dim: int = 1024,
    normalize_embedding: bool = False,
) -> NetworkSize:
    """The size of :func:`lenet` with these arguments (closed form, nothing built): the FC layer grows with the image."""
    positive("in_channels", in_channels)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"lenet: image_size must be >= 8, got {image_size!r}")
    side = (image_size // 2) // 2
    body = container(
        conv(in_channels, 32, 5, bias=True),
        LEAF,
        LEAF,
        conv(32, 64, 5, bias=True),
        LEAF,
        LEAF,
        LEAF,
        linear(64 * side * side, positive("embed_dim", embed_dim)),
        LEAF,
    )
    return image_classifier(body, embed_dim, num_classes, mean, std, normalize_embedding)


@network(lenet_size)
def lenet(
    in_channels: int = 1,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_size: int = 28,
    embed_dim: int = 1024,
    normalize_embedding: bool = False,
) -> ImageClassifier:
    """LeNet-style MNIST network (LeCun et al., 1998; the variant of Madry et al. 2018, which the
    AFD paper also evaluates): conv(32, 5x5)-ReLU-maxpool2-conv(64, 5x5)-ReLU-maxpool2-FC(1024)-ReLU.

    Convolutions use padding 2, so each pooling halves (floors) the size: any
    ``image_size >= 8`` works (28 -> 7x7x64 before the FC).  The embedding is the 1024-unit ReLU layer.
    """
    if image_size < 8:
        raise ValueError(f"lenet: image_size must be >= 8, got {image_size}")
    side = (image_size // 2) // 2
    body = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, embed_dim),
        nn.ReLU(),
    )
    return ImageClassifier(body, embed_dim, num_classes, mean, std, normalize_embedding)

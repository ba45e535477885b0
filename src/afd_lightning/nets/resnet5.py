"""ResNet5, the MNIST network of the paper (Table A1), and its 8x8 variant for digits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from afd_lightning.nets.base import ImageClassifier
from afd_lightning.nets.size import (
    LEAF,
    NetworkSize,
    batch_norm,
    container,
    conv,
    image_classifier,
    linear,
    network,
    positive,
)


class BasicBlock(nn.Module):
    """ResNet v1 basic block: conv-BN-ReLU-conv-BN plus (projected) shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def basic_block_size(in_planes: int, planes: int, stride: int = 1) -> NetworkSize:
    """:class:`BasicBlock`'s size: two 3x3 convolutions with BatchNorm, a ReLU, and the (projected) shortcut."""
    shortcut = container(conv(in_planes, planes, 1), batch_norm(planes)) if stride != 1 or in_planes != planes else LEAF
    body = conv(in_planes, planes, 3) + batch_norm(planes) + conv(planes, planes, 3) + batch_norm(planes) + LEAF
    return container(body, shortcut)


def resnet5_size(
    in_channels: int = 1,
    num_classes: int = 10,
    stem_stride: int = 2,
    width: int = 32,
    block_width: int = 64,
    embed_dim: int = 200,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize_embedding: bool = False,
) -> NetworkSize:
    """The size of :func:`resnet5` with these arguments (closed form, nothing built)."""
    for name, value in (("in_channels", in_channels), ("stem_stride", stem_stride), ("width", width)):
        positive(name, value)
    positive("block_width", block_width)
    body = container(
        conv(in_channels, width, 3),
        batch_norm(width),
        LEAF,
        basic_block_size(width, block_width, stride=2),
        LEAF,
        LEAF,
        linear(block_width, embed_dim),
        LEAF,
    )
    return image_classifier(body, embed_dim, num_classes, mean, std, normalize_embedding)


@network(resnet5_size)
def resnet5(
    in_channels: int = 1,
    num_classes: int = 10,
    stem_stride: int = 2,
    width: int = 32,
    block_width: int = 64,
    embed_dim: int = 200,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize_embedding: bool = False,
) -> ImageClassifier:
    """Table A1: Conv(32, stride 2) - BN - ReLU - ResNet block(64, stride 2) - GAP - FC(200) - ReLU - FC(classes).

    The embedding is the 200-unit ReLU layer.  ``stem_stride=1`` gives the variant used for
    8x8 digits (8x8 -> 8x8 -> 4x4 before pooling), which otherwise is the same network.
    """
    body = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        BasicBlock(width, block_width, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(block_width, embed_dim),
        nn.ReLU(),
    )
    return ImageClassifier(body, embed_dim, num_classes, mean, std, normalize_embedding)

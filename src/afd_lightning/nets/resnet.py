"""CIFAR-style ResNet-18 (He et al., 2016) and pre-activation ResNet-18 (He et al., ECCV 2016).

Both use a 3x3 stride-1 stem without max-pool and adaptive average pooling, so they
accept any input of at least 8x8 pixels.  The embedding is the 512-d pooled feature vector.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from afd_lightning.nets.base import ImageClassifier
from afd_lightning.nets.resnet5 import BasicBlock, basic_block_size
from afd_lightning.nets.size import LEAF, NetworkSize, batch_norm, container, conv, image_classifier, network, positive


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv-BN-ReLU-conv plus identity/projected shortcut.

    The projection shortcut (when the shape changes) takes the pre-activated input,
    as in "Identity Mappings in Deep Residual Networks".
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # WideResNet's option
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x):
        out = self.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return out + shortcut


def preact_block_size(in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> NetworkSize:
    """:class:`PreActBlock`'s size: two BatchNorms, two 3x3 convolutions, ReLU, dropout (or identity), shortcut."""
    shortcut = conv(in_planes, planes, 1) if stride != 1 or in_planes != planes else NetworkSize()
    return container(
        batch_norm(in_planes),
        conv(in_planes, planes, 3),
        batch_norm(planes),
        conv(planes, planes, 3),
        LEAF,
        LEAF,
        shortcut,
    )


def stages_size(
    block_size, in_planes: int, num_blocks: Sequence[int], planes: Sequence[int]
) -> tuple[NetworkSize, int]:
    """(size, output width) of :func:`_stages`: the first block of a stage may project, the others repeat alike.

    Linear in the number of stages, not of blocks: a stage of ``n`` blocks is its first block plus ``n - 1``
    copies of the second.
    """
    total = NetworkSize()
    for i, (n, p) in enumerate(zip(num_blocks, planes)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"num_blocks must hold non-negative integers, got {n!r}")
        positive("planes", p)
        if n == 0:
            continue
        total = total + block_size(in_planes, p, 1 if i == 0 else 2) + block_size(p, p, 1) * (n - 1)
        in_planes = p
    return total, in_planes


def _check_stages(in_channels: int, num_blocks: Sequence[int], planes: Sequence[int]) -> None:
    positive("in_channels", in_channels)
    if len(planes) == 0:
        raise ValueError("planes must hold at least one width")
    for p in planes:
        positive("planes", p)


def resnet18_size(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_blocks: Sequence[int] = (2, 2, 2, 2),
    planes: Sequence[int] = (64, 128, 256, 512),
    normalize_embedding: bool = False,
) -> NetworkSize:
    """The size of :func:`resnet18` with these arguments (closed form, nothing built)."""
    _check_stages(in_channels, num_blocks, planes)
    stages, _ = stages_size(basic_block_size, planes[0], num_blocks, planes)
    body = container(conv(in_channels, planes[0], 3), batch_norm(planes[0]), LEAF, stages, LEAF, LEAF)
    return image_classifier(body, planes[-1], num_classes, mean, std, normalize_embedding)


def preact_resnet18_size(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_blocks: Sequence[int] = (2, 2, 2, 2),
    planes: Sequence[int] = (64, 128, 256, 512),
    normalize_embedding: bool = False,
) -> NetworkSize:
    """The size of :func:`preact_resnet18` with these arguments (closed form, nothing built)."""
    _check_stages(in_channels, num_blocks, planes)
    stages, _ = stages_size(preact_block_size, planes[0], num_blocks, planes)
    body = container(conv(in_channels, planes[0], 3), stages, batch_norm(planes[-1]), LEAF, LEAF, LEAF)
    return image_classifier(body, planes[-1], num_classes, mean, std, normalize_embedding)


def _stages(
    block: type[nn.Module], in_planes: int, num_blocks: Sequence[int], planes: Sequence[int]
) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (n, p) in enumerate(zip(num_blocks, planes)):
        for j in range(n):
            layers.append(block(in_planes, p, stride=(1 if i == 0 else 2) if j == 0 else 1))
            in_planes = p
    return layers


@network(resnet18_size)
def resnet18(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_blocks: Sequence[int] = (2, 2, 2, 2),
    planes: Sequence[int] = (64, 128, 256, 512),
    normalize_embedding: bool = False,
) -> ImageClassifier:
    """ResNet-18 (He et al., CVPR 2016), CIFAR variant: 3x3 stem conv(64, stride 1), no max-pool,
    4 stages of BasicBlocks (strides 1/2/2/2), global average pool.

    The embedding is the ``planes[-1]``-d (512) pooled feature vector.
    """
    body = nn.Sequential(
        nn.Conv2d(in_channels, planes[0], 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(planes[0]),
        nn.ReLU(),
        *_stages(BasicBlock, planes[0], num_blocks, planes),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return ImageClassifier(body, planes[-1], num_classes, mean, std, normalize_embedding)


@network(preact_resnet18_size)
def preact_resnet18(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_blocks: Sequence[int] = (2, 2, 2, 2),
    planes: Sequence[int] = (64, 128, 256, 512),
    normalize_embedding: bool = False,
) -> ImageClassifier:
    """Pre-activation ResNet-18 (He et al., "Identity Mappings in Deep Residual Networks", 2016),
    CIFAR stem (3x3 conv(64, stride 1), no max-pool), final BN-ReLU, global average pool.

    The embedding is the ``planes[-1]``-d (512) pooled feature vector.
    """
    body = nn.Sequential(
        nn.Conv2d(in_channels, planes[0], 3, stride=1, padding=1, bias=False),
        *_stages(PreActBlock, planes[0], num_blocks, planes),
        nn.BatchNorm2d(planes[-1]),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return ImageClassifier(body, planes[-1], num_classes, mean, std, normalize_embedding)

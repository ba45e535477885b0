"""WideResNet (Zagoruyko & Komodakis, 2016) as used for CIFAR by Madry et al. and TRADES."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from afd_lightning.nets.base import ImageClassifier
from afd_lightning.nets.resnet import PreActBlock, preact_block_size
from afd_lightning.nets.size import LEAF, NetworkSize, batch_norm, container, conv, image_classifier, network, positive


def wide_resnet_size(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    depth: int = 34,
    widen_factor: int = 10,
    dropout: float = 0.0,
    normalize_embedding: bool = False,
) -> NetworkSize:
    """The size of :func:`wide_resnet` with these arguments (closed form, nothing built)."""
    _check_depth(depth)
    positive("in_channels", in_channels)
    positive("widen_factor", widen_factor)
    n = (depth - 4) // 6
    widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    groups = NetworkSize()
    for g, stride in enumerate((1, 2, 2)):  # a group: its first block, then n - 1 alike
        groups = (
            groups
            + preact_block_size(widths[g], widths[g + 1], stride)
            + preact_block_size(widths[g + 1], widths[g + 1], 1) * (n - 1)
        )
    body = container(conv(in_channels, widths[0], 3), groups, batch_norm(widths[3]), LEAF, LEAF, LEAF)
    return image_classifier(body, widths[3], num_classes, mean, std, normalize_embedding)


def _check_depth(depth: int) -> None:
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"wide_resnet: depth must be 6n + 4 with n >= 1, got {depth}")


@network(wide_resnet_size)
def wide_resnet(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    depth: int = 34,
    widen_factor: int = 10,
    dropout: float = 0.0,
    normalize_embedding: bool = False,
) -> ImageClassifier:
    """WRN-depth-k (Zagoruyko & Komodakis, 2016), CIFAR layout: conv3x3(16), three groups of
    ``(depth - 4) / 6`` wide blocks with widths 16k/32k/64k (strides 1/2/2), BN-ReLU, global
    average pool.

    The embedding is the ``64 * widen_factor``-d pooled feature vector (640 for WRN-34-10).
    """
    _check_depth(depth)
    n = (depth - 4) // 6
    widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)]
    in_planes = widths[0]
    for g, stride in enumerate((1, 2, 2)):
        for i in range(n):
            # a wide block is a pre-activation block, optionally with dropout between its convolutions
            layers.append(PreActBlock(in_planes, widths[g + 1], stride if i == 0 else 1, dropout))
            in_planes = widths[g + 1]
    layers += [nn.BatchNorm2d(in_planes), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return ImageClassifier(nn.Sequential(*layers), in_planes, num_classes, mean, std, normalize_embedding)


def wide_resnet34_10_size(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dropout: float = 0.0,
    normalize_embedding: bool = False,
) -> NetworkSize:
    """The size of :func:`wide_resnet34_10` (WRN-34-10) with these arguments."""
    return wide_resnet_size(
        in_channels, num_classes, mean, std, depth=34, widen_factor=10, normalize_embedding=normalize_embedding
    )


@network(wide_resnet34_10_size)
def wide_resnet34_10(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dropout: float = 0.0,
    normalize_embedding: bool = False,
) -> ImageClassifier:
    """WRN-34-10, the CIFAR-10 network of Madry et al. (2018) and TRADES (Zhang et al., 2019).

    About 46.2M parameters for 10 classes; the embedding is the 640-d pooled feature vector.
    """
    return wide_resnet(
        in_channels,
        num_classes,
        mean,
        std,
        depth=34,
        widen_factor=10,
        dropout=dropout,
        normalize_embedding=normalize_embedding,
    )

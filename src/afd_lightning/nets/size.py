"""How big a network is, from its arguments alone: closed forms computed before any module exists.

A stored config (a checkpoint's, an export's ``config.json``) may ask for any network the allow-list holds with
any arguments of the right types. Building it to count it (even on the ``meta`` device, which allocates no
tensor memory) still makes every ``nn.Module`` object: ``wide_resnet(depth=600004)`` or
``resnet18(num_blocks=[100000], planes=[1])`` took more than 1.5 GB in 30 s before a limit could refuse them.
So each network builder of this package carries a *size function* with its own signature that returns the
exact :class:`NetworkSize` (tensor elements of parameters and buffers, and modules) of the network it would build,
in time linear in the number of stages (never in the number of blocks or layers). The loaders in
:mod:`afd_lightning.store` compare it with their limits before calling the builder.

:func:`network` registers a builder with its size function; a builder of your own package that ``trust=[...]``
names may be registered the same way (docs/byon.md). ``tests/nets/test_sizes.py`` checks each size function
against the network it describes, for many arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

# The attribute a registered builder carries: its size function.
SIZE_ATTRIBUTE = "__afd_network_size__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class NetworkSize:
    """Tensor elements (parameters and buffers, as the parameter limit counts them) and modules of a network."""

    elements: int = 0
    modules: int = 0

    def __add__(self, other: NetworkSize) -> NetworkSize:
        return NetworkSize(self.elements + other.elements, self.modules + other.modules)

    def __mul__(self, times: int) -> NetworkSize:
        return NetworkSize(self.elements * times, self.modules * times)


def network(size: Callable[..., NetworkSize]) -> Callable[[F], F]:
    """Register a network builder (a class or function) with ``size``, its size function (same arguments).

    Only registered builders (and, under ``trust``, classes of your own package) may be named by a stored
    config's model slot; the size function is what lets a loader refuse a network before building it.
    """

    def register(builder: F) -> F:
        setattr(builder, SIZE_ATTRIBUTE, size)
        return builder

    return register


def size_function(builder: Any) -> Callable[..., NetworkSize] | None:
    """The size function registered with ``builder`` (:func:`network`), or None."""
    found = getattr(builder, SIZE_ATTRIBUTE, None)
    return found if callable(found) else None


# ----------------------------------------------------------------------------------------- building blocks
def positive(name: str, value: int) -> int:
    """``value``, or a ValueError naming the argument when it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def conv(c_in: int, c_out: int, kernel: int, bias: bool = False) -> NetworkSize:
    return NetworkSize(c_in * c_out * kernel * kernel + (c_out if bias else 0), 1)


def batch_norm(channels: int) -> NetworkSize:
    """weight, bias, running_mean, running_var (``channels`` each) and num_batches_tracked (one)."""
    return NetworkSize(4 * channels + 1, 1)


def linear(d_in: int, d_out: int, bias: bool = True) -> NetworkSize:
    return NetworkSize(d_in * d_out + (d_out if bias else 0), 1)


# A module without tensors: ReLU, pooling, Flatten, Identity, Dropout, an empty Sequential.
LEAF = NetworkSize(0, 1)


def container(*children: NetworkSize) -> NetworkSize:
    """An ``nn.Sequential`` (or any module) holding ``children``: itself plus them."""
    total = LEAF
    for child in children:
        total = total + child
    return total


def normalize(mean: Sequence[float] | None, std: Sequence[float] | None) -> NetworkSize:
    """:class:`~afd_lightning.nets.base.Normalize`: a buffer of ``len(mean)`` and one of ``len(std)`` when enabled."""
    if (mean is None) != (std is None):
        raise ValueError("mean and std must both be given, or neither")
    return NetworkSize(0 if mean is None or std is None else len(mean) + len(std), 1)


def image_classifier(
    body: NetworkSize,
    embed_dim: int,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize_embedding: bool = False,
) -> NetworkSize:
    """:class:`~afd_lightning.nets.base.ImageClassifier` around a body of size ``body``."""
    positive("embed_dim", embed_dim)
    positive("num_classes", num_classes)
    encoder = container(normalize(mean, std), body, *([LEAF] if normalize_embedding else []))
    return container(encoder, linear(embed_dim, num_classes))

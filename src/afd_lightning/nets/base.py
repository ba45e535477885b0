"""The shape every network in this package has: an encoder E and a linear category decoder Dc.

``model(x) == model.classifier(model.encoder(x))`` for images ``x`` in [0, 1] (NCHW).
The encoder's output is the embedding the paper works with: the activations before
the last linear layer.  Input normalisation (if any) is the encoder's first layer,
so attacks always work in pixel space and clip to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from afd_lightning.nets.size import image_classifier, network


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; the identity when ``mean`` and ``std`` are None."""

    mean: torch.Tensor  # buffers, registered only when enabled
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("Normalize needs both mean and std, or neither")
        self.enabled = mean is not None
        if mean is not None and std is not None:
            if any(s <= 0 for s in std):
                raise ValueError(f"Normalize: std must be positive, got {list(std)}")
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return (
            "identity"
            if not self.enabled
            else f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
        )


class L2Normalize(nn.Module):
    """``F.normalize(z)``: each embedding scaled to unit L2 norm (the official AFD code's ``*norm`` encoders)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1)


@network(image_classifier)
class ImageClassifier(nn.Module):
    """``classifier(encoder(x))`` with the encoder and the linear decoder as named children.

    Args:
        body: maps normalised images to a flat embedding of size ``embed_dim``.
        embed_dim: size of the embedding (input of the last linear layer).
        num_classes: number of categories.
        mean, std: per-channel input normalisation applied inside the encoder (None: none).
        normalize_embedding: end the encoder with ``F.normalize``, so that Dc (and AFD's Da) see unit
            vectors, as the authors' public code does (``resnet18norm``: ``F.normalize(out)`` after the
            pooling, models/resnet_cifar.py and models/resnet_mnist.py). The paper does not mention it;
            default False. It adds no parameters: checkpoints keep the same keys.
    """

    def __init__(
        self,
        body: nn.Module,
        embed_dim: int,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalize_embedding: bool = False,
    ):
        super().__init__()
        self.embed_dim = int(embed_dim)
        self.num_classes = int(num_classes)
        self.normalize_embedding = bool(normalize_embedding)
        layers = [Normalize(mean, std), body] + ([L2Normalize()] if self.normalize_embedding else [])
        self.encoder = nn.Sequential(*layers)
        self.classifier = nn.Linear(self.embed_dim, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(embedding, logits)`` from one encoder pass."""
        z = self.encoder(x)
        return z, self.classifier(z)

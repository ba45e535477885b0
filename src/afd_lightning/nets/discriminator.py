"""The adversarial decoder Da of AFD: a label-conditioned projection discriminator on embeddings."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class AdversarialDecoder(nn.Module):
    """Da(z, y) = w . h(z) + b + <embed(y), h(z)>   (Miyato & Koyama 2018, projection discriminator).

    ``h`` is three fully connected layers of ``hidden_dim`` units with LeakyReLU(0.2); every
    layer, the output layer and the label embedding included, is spectrally normalised
    (Miyato et al. 2018), as in the AFD paper (Sec. 3, 200 units for MNIST, 512 for CIFAR).
    Returns one real-valued logit per sample: high for "clean", low for "perturbed".
    """

    def __init__(self, embed_dim: int, num_classes: int, hidden_dim: int = 200, negative_slope: float = 0.2):
        super().__init__()
        if embed_dim <= 0 or num_classes <= 0 or hidden_dim <= 0:
            raise ValueError(
                f"AdversarialDecoder needs positive sizes, got embed_dim={embed_dim}, "
                f"num_classes={num_classes}, hidden_dim={hidden_dim}"
            )
        self.embed_dim, self.num_classes, self.hidden_dim = embed_dim, num_classes, hidden_dim
        dims = [embed_dim, hidden_dim, hidden_dim, hidden_dim]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [spectral_norm(nn.Linear(d_in, d_out)), nn.LeakyReLU(negative_slope)]
        self.features = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(hidden_dim, 1))
        self.label_embedding = spectral_norm(nn.Embedding(num_classes, hidden_dim))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(z)
        projection = (self.label_embedding(y) * h).sum(dim=1)
        return self.linear(h).squeeze(1) + projection

"""The adversarial decoder Da of AFD: a label-conditioned projection discriminator on embeddings."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from afd_lightning.nets.size import LEAF, NetworkSize, container, network, positive

INITS = ("default", "xavier")


def spectral_linear(d_in: int, d_out: int, bias: bool = True) -> NetworkSize:
    """``spectral_norm(Linear)`` (or of an ``Embedding`` without bias): the layer, its parametrization modules
    (a ModuleDict, a ParametrizationList, the _SpectralNorm), the original weight and the power iteration's
    ``u`` (``d_out``) and ``v`` (``d_in``) vectors."""
    return NetworkSize(d_in * d_out + (d_out if bias else 0) + d_out + d_in, 4)


def adversarial_decoder_size(
    embed_dim: int,
    num_classes: int,
    hidden_dim: int = 200,
    negative_slope: float = 0.2,
    num_hidden_layers: int = 3,
    init: str = "default",
) -> NetworkSize:
    """The size of :class:`AdversarialDecoder` with these arguments (closed form, nothing built)."""
    for name, value in (("embed_dim", embed_dim), ("num_classes", num_classes), ("hidden_dim", hidden_dim)):
        positive(name, value)
    positive("num_hidden_layers", num_hidden_layers)
    hidden = spectral_linear(hidden_dim, hidden_dim) + LEAF
    features = container(spectral_linear(embed_dim, hidden_dim) + LEAF, hidden * (num_hidden_layers - 1))
    # the output layer (hidden -> 1) and the label embedding (num_classes rows of hidden_dim, no bias)
    return container(features, spectral_linear(hidden_dim, 1), spectral_linear(hidden_dim, num_classes, bias=False))


@network(adversarial_decoder_size)
class AdversarialDecoder(nn.Module):
    """Da(z, y) = w . h(z) + b + <embed(y), h(z)>   (Miyato & Koyama 2018, projection discriminator).

    ``h`` is ``num_hidden_layers`` fully connected layers of ``hidden_dim`` units with LeakyReLU(0.2);
    every layer, the output layer and the label embedding included, is spectrally normalised
    (Miyato et al. 2018). Returns one real-valued logit per sample: high for "clean", low for "perturbed".

    Args:
        embed_dim: size of E's embedding (Da's input).
        num_classes: number of labels (rows of the projection embedding).
        hidden_dim: width of every hidden layer (the paper, Sec. 3.2: 200 for MNIST, 512 for CIFAR).
        negative_slope: LeakyReLU slope (0.2, the paper's Sec. 3.2 and the official code).
        num_hidden_layers: 3 in the paper (Sec. 3.2: "three fully connected layers ... followed by a
            projection discriminator layer"); 2 in the authors' code (``SNPDFC3``: linear1, linear2,
            then the output layer l7 and the projection l_y; models/cifar_models.py, models/mnist_models.py).
        init: ``default`` (PyTorch's initialisation of every layer) or ``xavier`` (the official code's
            ``SNPDFC3._initialize``: Xavier-uniform weights for the output layer and the label embedding;
            hidden layers keep PyTorch's default). The paper does not say.
    """

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        hidden_dim: int = 200,
        negative_slope: float = 0.2,
        num_hidden_layers: int = 3,
        init: str = "default",
    ):
        super().__init__()
        if embed_dim <= 0 or num_classes <= 0 or hidden_dim <= 0 or num_hidden_layers < 1:
            raise ValueError(
                f"AdversarialDecoder needs positive sizes, got embed_dim={embed_dim}, num_classes={num_classes}, "
                f"hidden_dim={hidden_dim}, num_hidden_layers={num_hidden_layers}"
            )
        if init not in INITS:
            raise ValueError(f"AdversarialDecoder: init={init!r} is not one of {list(INITS)}")
        self.embed_dim, self.num_classes, self.hidden_dim = embed_dim, num_classes, hidden_dim
        self.num_hidden_layers, self.init = int(num_hidden_layers), init
        dims = [embed_dim] + [hidden_dim] * self.num_hidden_layers
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [spectral_norm(nn.Linear(d_in, d_out)), nn.LeakyReLU(negative_slope)]
        self.features = nn.Sequential(*layers)
        linear, label_embedding = nn.Linear(hidden_dim, 1), nn.Embedding(num_classes, hidden_dim)
        if init == "xavier":  # before spectral_norm, so that its power iteration starts from these weights
            nn.init.xavier_uniform_(linear.weight)
            nn.init.xavier_uniform_(label_embedding.weight)
        self.linear = spectral_norm(linear)
        self.label_embedding = spectral_norm(label_embedding)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(z)
        projection = (self.label_embedding(y) * h).sum(dim=1)
        return self.linear(h).squeeze(1) + projection

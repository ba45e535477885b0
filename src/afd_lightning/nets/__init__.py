"""Plain nn.Modules: encoders with a linear category decoder, and the adversarial decoder."""

from afd_lightning.nets.base import ImageClassifier, Normalize
from afd_lightning.nets.discriminator import AdversarialDecoder
from afd_lightning.nets.lenet import lenet
from afd_lightning.nets.protocol import RobustClassifier, check_network
from afd_lightning.nets.resnet import preact_resnet18, resnet18
from afd_lightning.nets.resnet5 import resnet5
from afd_lightning.nets.size import NetworkSize, network
from afd_lightning.nets.wideresnet import wide_resnet, wide_resnet34_10

__all__ = [
    "AdversarialDecoder",
    "ImageClassifier",
    "NetworkSize",
    "Normalize",
    "RobustClassifier",
    "check_network",
    "lenet",
    "network",
    "preact_resnet18",
    "resnet18",
    "resnet5",
    "wide_resnet",
    "wide_resnet34_10",
]

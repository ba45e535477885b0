"""Plain nn.Modules: encoders with a linear category decoder, and the adversarial decoder."""
from afd_lightning.nets.base import ImageClassifier, Normalize
from afd_lightning.nets.discriminator import AdversarialDecoder
from afd_lightning.nets.resnet5 import resnet5

__all__ = ["AdversarialDecoder", "ImageClassifier", "Normalize", "resnet5"]

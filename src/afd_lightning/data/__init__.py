"""LightningDataModules: images as float tensors in [0, 1], NCHW, integer labels."""

from afd_lightning.data.base import ImageDataModule
from afd_lightning.data.digits import DigitsDataModule
from afd_lightning.data.mnist10k import MNIST10kDataModule
from afd_lightning.data.torchvision_data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetCorruptedError,
    DatasetNotFoundError,
    MNISTDataModule,
    TorchvisionDataModule,
)

__all__ = [
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "DatasetCorruptedError",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "ImageDataModule",
    "MNIST10kDataModule",
    "MNISTDataModule",
    "TorchvisionDataModule",
]

"""What every data module here shares: batch sizes, loaders, and the dataset's facts (``meta``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from afd_lightning.errors import ConfigError


class ImageDataModule(pl.LightningDataModule):
    """Base for the data modules: float images in [0, 1], NCHW, integer labels.

    Subclasses set ``num_classes``, ``channels`` and ``image_size`` and fill ``train_set``,
    ``val_set`` and ``test_set`` in ``setup``.  ``meta`` is the dataset config's block of facts
    (classes, shape, the paper's threat model, ...) that the rest of the config interpolates;
    its shape entries are checked against the subclass so a wrong config cannot go unnoticed.
    """

    num_classes: int
    channels: int
    image_size: int

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
        meta: dict[str, Any] | None = None,
    ):
        super().__init__()
        if batch_size <= 0 or eval_batch_size <= 0:
            raise ConfigError(
                f"{type(self).__name__}: batch sizes must be positive, got batch_size={batch_size}, "
                f"eval_batch_size={eval_batch_size}"
            )
        if num_workers < 0:
            raise ConfigError(f"{type(self).__name__}: num_workers must be >= 0, got {num_workers}")
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.meta = dict(meta or {})
        for key in ("num_classes", "channels", "image_size"):
            if key in self.meta and self.meta[key] != getattr(self, key):
                raise ConfigError(
                    f"{type(self).__name__}: dataset config says {key}={self.meta[key]} but the data has "
                    f"{key}={getattr(self, key)}; fix conf/train/dataset/*.yaml"
                )
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for a data loader")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

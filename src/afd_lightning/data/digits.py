"""scikit-learn's handwritten digits (UCI, 1,797 real 8x8 images): the offline default dataset."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from afd_lightning.data.base import ImageDataModule
from afd_lightning.errors import ConfigError


class DigitsDataModule(ImageDataModule):
    """``sklearn.datasets.load_digits`` as 1x8x8 float images in [0, 1] (pixel value / 16).

    A fixed stratified split, drawn with ``split_seed`` (independent of the training seed):
    with the defaults (``val_fraction=0.1``, ``test_fraction=0.2``) it is
    1,257 train / 180 val / 360 test images.  Everything lives in memory as tensors.
    """

    num_classes = 10
    channels = 1
    image_size = 8

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ConfigError(
                f"digits: val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) "
                "and leave some training data"
            )
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
        y = torch.tensor(data.target, dtype=torch.long)
        idx = np.arange(len(y))
        train_val, test = train_test_split(
            idx, test_size=self.test_fraction, stratify=data.target, random_state=self.split_seed
        )
        train, val = train_test_split(
            train_val,
            test_size=self.val_fraction / (1 - self.test_fraction),
            stratify=data.target[train_val],
            random_state=self.split_seed,
        )
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(x[test], y[test])

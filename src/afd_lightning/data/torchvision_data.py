"""MNIST, CIFAR-10 and CIFAR-100 through ``torchvision.datasets``, in pixel space [0, 1].

Images are ``ToTensor()`` only: no normalisation here (the networks normalise their input,
so attacks and their epsilons live in [0, 1] pixel space).  Training augmentation follows the
AFD paper: CIFAR gets ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``, MNIST nothing.

A validation split of ``val_size`` images is held out of the training set with a fixed
``split_seed`` (independent of the training seed); it is read *without* augmentation.
``val_size=0`` validates on the test set instead.

Files are looked up by this module before torchvision is called, so a missing data set gives
one clear :class:`DatasetNotFoundError` (a ``FileNotFoundError``) that names the directory,
the expected layout and the fix, instead of a traceback from inside torchvision or urllib.
"""

from __future__ import annotations

import copy
import gzip
import os
import pickle
from typing import Any, ClassVar
from urllib.error import URLError

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv_datasets
from torchvision import transforms as T
from torchvision.datasets.vision import StandardTransform

from afd_lightning.data.base import ImageDataModule
from afd_lightning.errors import AFDUserError
from afd_lightning.files.reader import UnreadableFileError, read_bytes
from afd_lightning.files.writer import write_bytes_atomic


class DatasetNotFoundError(AFDUserError, FileNotFoundError):
    """The data set's files are not in ``data_dir`` (and could not be downloaded)."""


class DatasetCorruptedError(DatasetNotFoundError):
    """The data set's files are in ``data_dir`` but torchvision rejects them (checksum, truncation, format)."""


# Exceptions a failed torchvision download can end in: URLError (a subclass of OSError) when
# there is no network, RuntimeError for a bad checksum or when every MNIST mirror failed.
_DOWNLOAD_ERRORS = (URLError, OSError, RuntimeError)
MAX_GZ_BYTES = 200_000_000  # the largest MNIST archive is about 9.9 MB
# Exceptions reading files that exist can end in (checksum failure, truncated pickle/idx files...).
_READ_ERRORS = (
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AssertionError,
    pickle.UnpicklingError,
)


class TorchvisionDataModule(ImageDataModule):
    """Shared logic of the torchvision-backed data modules.

    Subclasses set ``dataset_name`` (for messages), ``torchvision_class``, ``expected_files``
    (paths relative to ``data_dir`` that torchvision reads) and, optionally,
    ``train_augmentations``.
    """

    dataset_name: ClassVar[str]
    torchvision_class: ClassVar[type[Dataset]]
    expected_files: ClassVar[tuple[str, ...]]
    # Extra human-readable hint for the error message (e.g. "(or .gz)").
    layout_note: ClassVar[str] = ""

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: int = 5000,
        split_seed: int = 0,
        augment: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if int(val_size) < 0:
            raise ValueError(f"{self.dataset_name}: val_size must be >= 0, got {val_size}")
        # Absolute now, so that messages name the real place even if the working directory changes later.
        self.data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
        self.download = bool(download)
        self.val_size = int(val_size)
        self.split_seed = int(split_seed)
        self.augment = bool(augment)

    # ------------------------------------------------------------------ transforms
    def train_augmentations(self) -> list[Any]:
        """PIL-level augmentations for the training split (none by default)."""
        return []

    def train_transform(self) -> T.Compose:
        augs = self.train_augmentations() if self.augment else []
        return T.Compose([*augs, T.ToTensor()])

    def eval_transform(self) -> T.Compose:
        return T.Compose([T.ToTensor()])

    # ------------------------------------------------------------------ files
    def missing_files(self) -> list[str]:
        """Expected files (relative to ``data_dir``) that are not there."""
        return [rel for rel in self.expected_files if not os.path.isfile(os.path.join(self.data_dir, rel))]

    def _unpack_local_files(self) -> None:
        """Hook for turning files the user placed into what torchvision reads (MNIST: .gz)."""

    def _not_found(self, missing: list[str], download_error: BaseException | None = None) -> DatasetNotFoundError:
        layout = "\n".join(f"      {os.path.join(self.data_dir, rel)}" for rel in self.expected_files)
        shown = ", ".join(missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
        if download_error is not None:
            head = (
                f"{self.dataset_name}: downloading into {self.data_dir} failed "
                f"({type(download_error).__name__}: {download_error}); still missing: {shown}."
            )
        else:
            head = f"{self.dataset_name} not found in {self.data_dir} (missing: {shown})"
            head += (
                "; download=true, but prepare_data() (which downloads) has not been run."
                if self.download
                else "; download is off (dataset.download=false)."
            )
        return DatasetNotFoundError(
            f"{head}\nTo fix, either\n"
            f"  * rerun with dataset.download=true on a machine with network access "
            f"(torchvision downloads it into {self.data_dir}), or\n"
            f"  * copy the files there yourself, laid out as{self.layout_note}:\n{layout}\n"
            f"  * or point paths.data_dir / dataset.data_dir at a directory that already holds them."
        )

    def _check_files(self) -> None:
        missing = self.missing_files()
        if missing:
            raise self._not_found(missing)
        self._unpack_local_files()

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Download (rank 0 only, as Lightning calls it) when ``download=True``; else only check the files."""
        self._unpack_local_files()
        missing = self.missing_files()
        if not missing:
            return
        if not self.download:
            raise self._not_found(missing)
        os.makedirs(self.data_dir, exist_ok=True)
        try:
            # torchvision's own download (+ checksum and extraction); loading the train split
            # afterwards is a cheap sanity check that the download is readable.
            self.torchvision_class(self.data_dir, train=True, download=True)  # type: ignore[call-arg]
        except _DOWNLOAD_ERRORS as err:
            raise self._not_found(self.missing_files() or missing, download_error=err) from err
        missing = self.missing_files()
        if missing:  # torchvision claimed success but the layout is not what we expect
            raise self._not_found(missing)

    def _load(self, train: bool, transform: Any) -> Dataset:
        try:
            return self.torchvision_class(self.data_dir, train=train, transform=transform, download=False)  # type: ignore[call-arg]
        except _READ_ERRORS as err:
            raise DatasetCorruptedError(
                f"{self.dataset_name}: the files in {self.data_dir} are there but torchvision cannot use them "
                f"({type(err).__name__}: {err}). They are probably corrupt or incomplete (a partial copy or "
                f"download, or a different release whose checksums differ). Delete them and rerun with "
                f"dataset.download=true on a machine with network access, or copy a complete set there:\n"
                + "\n".join(f"      {os.path.join(self.data_dir, rel)}" for rel in self.expected_files)
            ) from err

    def setup(self, stage: str | None = None) -> None:
        want_fit = stage in (None, "fit", "validate")
        want_test = stage in (None, "test", "predict") or (want_fit and self.val_size == 0)
        if (want_fit and self.train_set is None) or (want_test and self.test_set is None):
            self._check_files()
        if want_test and self.test_set is None:
            self.test_set = self._load(train=False, transform=self.eval_transform())
        if want_fit and self.train_set is None:
            train_full = self._load(train=True, transform=self.train_transform())
            if self.val_size == 0:
                self.train_set, self.val_set = train_full, self.test_set
                return
            n = len(train_full)  # type: ignore[arg-type]
            if self.val_size >= n:
                raise ValueError(
                    f"{self.dataset_name}: val_size={self.val_size} leaves no training data "
                    f"(the training set has {n} images)"
                )
            generator = torch.Generator().manual_seed(self.split_seed)
            perm = torch.randperm(n, generator=generator)
            val_idx = perm[: self.val_size].sort().values.tolist()
            train_idx = perm[self.val_size :].sort().values.tolist()
            # Second dataset object over the same files (and the same in-memory arrays: a shallow
            # copy) that reads without augmentation, indexed with the held-out indices.
            train_plain = _with_transform(train_full, self.eval_transform())
            self.train_set = Subset(train_full, train_idx)
            self.val_set = Subset(train_plain, val_idx)


def _with_transform(dataset: Any, transform: Any) -> Any:
    """A shallow copy of a torchvision VisionDataset (sharing its data) with another transform."""
    clone = copy.copy(dataset)
    clone.transform = transform
    clone.transforms = StandardTransform(transform, getattr(dataset, "target_transform", None))
    return clone


class MNISTDataModule(TorchvisionDataModule):
    """MNIST, 1x28x28, 60,000 train (55,000 + 5,000 val by default) / 10,000 test; no augmentation.

    torchvision reads the *uncompressed* idx files from ``<data_dir>/MNIST/raw/``; if only the
    ``.gz`` files (as distributed) are there, they are decompressed next to them first.
    """

    num_classes = 10
    channels = 1
    image_size = 28
    dataset_name = "MNIST"
    torchvision_class = tv_datasets.MNIST
    expected_files = (
        "MNIST/raw/train-images-idx3-ubyte",
        "MNIST/raw/train-labels-idx1-ubyte",
        "MNIST/raw/t10k-images-idx3-ubyte",
        "MNIST/raw/t10k-labels-idx1-ubyte",
    )
    layout_note = " (each file may also be the distributed .gz, which is decompressed on first use)"

    def missing_files(self) -> list[str]:
        # torchvision also still accepts its old cache, MNIST/processed/{training,test}.pt.
        legacy = [os.path.join(self.data_dir, "MNIST", "processed", f) for f in ("training.pt", "test.pt")]
        if all(os.path.isfile(p) for p in legacy):
            return []
        return [
            rel
            for rel in self.expected_files
            if not (
                os.path.isfile(os.path.join(self.data_dir, rel))
                or os.path.isfile(os.path.join(self.data_dir, rel + ".gz"))
            )
        ]

    def _unpack_local_files(self) -> None:
        for rel in self.expected_files:
            raw = os.path.join(self.data_dir, rel)
            gz = raw + ".gz"
            if os.path.isfile(raw) or not os.path.isfile(gz):
                continue
            try:
                # read through the file reader (a regular file, bounded), written to a fresh temporary file renamed
                # over raw (atomic: safe if several processes unpack at once; a link at raw is refused)
                write_bytes_atomic(raw, gzip.decompress(read_bytes(gz, max_bytes=MAX_GZ_BYTES, what="MNIST archive")))
            except (OSError, EOFError, UnreadableFileError) as err:
                raise DatasetCorruptedError(
                    f"MNIST: could not decompress {gz} ({type(err).__name__}: {err}); the file is corrupt or "
                    f"incomplete. Replace it, or delete it and rerun with dataset.download=true on a machine "
                    f"with network access."
                ) from err


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10, 3x32x32, 50,000 train (45,000 + 5,000 val by default) / 10,000 test.

    Training augmentation (paper): RandomCrop(32, padding=4) + RandomHorizontalFlip.
    """

    num_classes = 10
    channels = 3
    image_size = 32
    dataset_name = "CIFAR-10"
    torchvision_class = tv_datasets.CIFAR10
    expected_files = (
        *(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        "cifar-10-batches-py/test_batch",
        "cifar-10-batches-py/batches.meta",
    )
    layout_note = (
        " (the unpacked cifar-10-python.tar.gz; that archive itself, placed in data_dir, is verified and "
        "unpacked without network by dataset.download=true)"
    )

    def train_augmentations(self) -> list[Any]:
        return [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (fine labels), 3x32x32, 50,000 train (45,000 + 5,000 val by default) / 10,000 test."""

    num_classes = 100
    dataset_name = "CIFAR-100"
    torchvision_class = tv_datasets.CIFAR100
    expected_files = (
        "cifar-100-python/train",
        "cifar-100-python/test",
        "cifar-100-python/meta",
    )
    layout_note = (
        " (the unpacked cifar-100-python.tar.gz; that archive itself, placed in data_dir, is verified and "
        "unpacked without network by dataset.download=true)"
    )

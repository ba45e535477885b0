"""MNIST / CIFAR-10 / CIFAR-100 data modules on tiny data sets written in the real on-disk formats.

Nothing here touches the network: downloads are replaced by functions that raise ``URLError``
(and ``urllib.request.urlopen`` is replaced as a safety net).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import urllib.request
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.mnist as tv_mnist
from omegaconf import OmegaConf

from afd_lightning.config.paths import config_dir
from afd_lightning.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetCorruptedError,
    DatasetNotFoundError,
    MNISTDataModule,
    TorchvisionDataModule,
)

CONF_DIR = config_dir("train")

N_TRAIN, N_TEST = 20, 8  # CIFAR-10: 5 training batches of 4


# ----------------------------------------------------------------------------- writers
def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_mnist(root: Path, gz: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four idx files under <root>/MNIST/raw/: big-endian headers, magic 2051 (images) / 2049 (labels)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", N_TRAIN, 1), ("t10k", N_TEST, 2)):
        x = _images(n, (28, 28), seed)
        y = (np.arange(n) * 3 + seed) % 10
        images = struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes()
        labels = struct.pack(">II", 2049, n) + y.astype(np.uint8).tobytes()
        for name, payload in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            if gz:
                (raw / (name + ".gz")).write_bytes(gzip.compress(payload))
            else:
                (raw / name).write_bytes(payload)
        out[split] = (x, y)
    return out


def _py2_pickle(d: dict[str, object]) -> bytes:
    """A protocol-2 pickle of a dict whose keys are Python 2 ``str`` (SHORT_BINSTRING), as in the
    real CIFAR files (written by Python 2): they load as ``'data'`` with ``encoding='latin1'``
    (what torchvision uses) and as ``b'data'`` with ``encoding='bytes'``.  Values are pickled by
    Python 3 (each fragment is self-contained, so their memo indices may safely overlap)."""
    body = b"\x80\x02}("  # PROTO 2, EMPTY_DICT, MARK
    for key, value in d.items():
        k = key.encode("ascii")
        body += b"U" + bytes([len(k)]) + k  # SHORT_BINSTRING
        body += pickle.dumps(value, protocol=2)[2:-1]  # drop PROTO and STOP
    return body + b"u."  # SETITEMS, STOP


def write_cifar10(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x_train, x_test = _images(N_TRAIN, (3072,), 3), _images(N_TEST, (3072,), 4)
    y_train, y_test = np.arange(N_TRAIN) % 10, (np.arange(N_TEST) * 7) % 10
    per = N_TRAIN // 5
    for i in range(5):
        sl = slice(i * per, (i + 1) * per)
        (folder / f"data_batch_{i + 1}").write_bytes(
            _py2_pickle(
                {
                    "batch_label": f"training batch {i + 1} of 5",
                    "labels": y_train[sl].tolist(),
                    "data": x_train[sl],
                    "filenames": [f"img{j}.png" for j in range(per)],
                }
            )
        )
    (folder / "test_batch").write_bytes(
        _py2_pickle(
            {
                "batch_label": "testing batch 1 of 1",
                "labels": y_test.tolist(),
                "data": x_test,
                "filenames": [f"t{j}.png" for j in range(N_TEST)],
            }
        )
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(
        _py2_pickle({"num_cases_per_batch": per, "label_names": names, "num_vis": 3072})
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def write_cifar100(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", N_TRAIN, 5), ("test", N_TEST, 6)):
        x = _images(n, (3072,), seed)
        fine = (np.arange(n) * 13 + seed) % 100
        (folder / split).write_bytes(
            _py2_pickle(
                {
                    "filenames": [f"{split}{j}.png" for j in range(n)],
                    "batch_label": split,
                    "fine_labels": fine.tolist(),
                    "coarse_labels": (fine // 5).tolist(),
                    "data": x,
                }
            )
        )
        out[split] = (x, fine)
    (folder / "meta").write_bytes(
        _py2_pickle(
            {
                "fine_label_names": [f"class{i}" for i in range(100)],
                "coarse_label_names": [f"super{i}" for i in range(20)],
            }
        )
    )
    return out


def _chw(x_flat_or_hw: np.ndarray, channels: int, size: int) -> torch.Tensor:
    """Written uint8 image(s) -> what ToTensor should give: float in [0, 1], CHW."""
    return torch.from_numpy(x_flat_or_hw.reshape(channels, size, size).astype(np.float32) / 255.0)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach the network fails at once (and is recorded)."""
    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append(repr(args[:1]))
        raise URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", refuse)
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", refuse)
    return calls


@pytest.fixture
def skip_md5(monkeypatch):
    """torchvision checks the CIFAR files against the real releases' MD5 sums (train/test
    batches in ``CIFAR10._check_integrity``, the meta file in ``_load_meta``), both through
    the module-level ``check_integrity``; our tiny files cannot match, so for these tests it
    only checks that the file exists.  The production path is unchanged."""
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


SPECS = {
    # cls, writer, channels, size, torchvision's name of the training split in our writer's dict
    "mnist": (MNISTDataModule, write_mnist, 1, 28, "train", "t10k"),
    "cifar10": (CIFAR10DataModule, write_cifar10, 3, 32, "train", "test"),
    "cifar100": (CIFAR100DataModule, write_cifar100, 3, 32, "train", "test"),
}


def _expected(written, key, channels, size):
    x, y = written[key]
    return [_chw(img, channels, size) for img in x], [int(v) for v in y]


# ----------------------------------------------------------------------------- loading
@pytest.mark.parametrize("name", list(SPECS))
def test_loads_shapes_labels_and_split(name, tmp_path, skip_md5, no_network):
    cls, writer, channels, size, train_key, test_key = SPECS[name]
    written = writer(tmp_path)
    dm = cls(data_dir=str(tmp_path), val_size=6, batch_size=4, eval_batch_size=5)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (N_TRAIN - 6, 6, N_TEST)
    assert (cls.num_classes, cls.channels, cls.image_size) == {
        "mnist": (10, 1, 28),
        "cifar10": (10, 3, 32),
        "cifar100": (100, 3, 32),
    }[name]

    # Train and val partition the training file, with the right labels at the right indices.
    train_idx, val_idx = list(dm.train_set.indices), list(dm.val_set.indices)
    assert sorted(train_idx + val_idx) == list(range(N_TRAIN))
    x_train, y_train = _expected(written, train_key, channels, size)
    x_test, y_test = _expected(written, test_key, channels, size)
    for ds, idx in ((dm.train_set, train_idx), (dm.val_set, val_idx)):
        for pos, i in enumerate(idx):
            img, label = ds[pos]
            assert img.shape == (channels, size, size) and img.dtype == torch.float32
            assert img.min() >= 0.0 and img.max() <= 1.0
            assert label == y_train[i]
    # Validation and test images are exactly the written pixels / 255 (no augmentation, no normalisation).
    for pos, i in enumerate(val_idx):
        assert torch.equal(dm.val_set[pos][0], x_train[i])
    for i in range(N_TEST):
        img, label = dm.test_set[i]
        assert torch.equal(img, x_test[i]) and label == y_test[i]

    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, channels, size, size) and x.dtype == torch.float32 and y.dtype == torch.long
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (5, channels, size, size)
    assert no_network == []


def test_cifar100_uses_fine_labels(tmp_path, skip_md5):
    written = write_cifar100(tmp_path)
    dm = CIFAR100DataModule(data_dir=str(tmp_path), val_size=0)
    dm.setup("test")
    labels = [dm.test_set[i][1] for i in range(N_TEST)]
    assert labels == written["test"][1].tolist() and max(labels) >= 20  # not the 20 coarse labels


def test_cifar_files_are_python2_pickles(tmp_path):
    """Documents the format our writer reproduces: keys are bytes under encoding='bytes'."""
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert b"data" in entry and b"labels" in entry and entry[b"data"].shape == (4, 3072)


def test_split_is_fixed_by_split_seed(tmp_path, skip_md5):
    write_cifar10(tmp_path)

    def val_indices(seed):
        dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=5, split_seed=seed)
        dm.setup("fit")
        return list(dm.val_set.indices)

    torch.manual_seed(123)  # the global seed must not matter
    first = val_indices(0)
    torch.manual_seed(456)
    assert val_indices(0) == first
    assert any(val_indices(s) != first for s in (1, 2, 3))


def test_val_not_augmented_but_cifar_train_is(tmp_path, skip_md5):
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=5)
    dm.setup("fit")

    def read_all(ds, seed):
        torch.manual_seed(seed)
        return torch.stack([ds[i][0] for i in range(len(ds))])

    assert torch.equal(read_all(dm.val_set, 0), read_all(dm.val_set, 1))
    assert not torch.equal(read_all(dm.train_set, 0), read_all(dm.train_set, 1))
    # Same seed, same augmentation: the randomness is torch's, so seeding makes it reproducible.
    assert torch.equal(read_all(dm.train_set, 7), read_all(dm.train_set, 7))

    plain = CIFAR10DataModule(data_dir=str(tmp_path), val_size=5, augment=False)
    plain.setup("fit")
    assert torch.equal(read_all(plain.train_set, 0), read_all(plain.train_set, 1))


def test_mnist_train_is_not_augmented(tmp_path):
    written = write_mnist(tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=5)
    dm.setup("fit")
    for pos, i in enumerate(dm.train_set.indices):
        assert torch.equal(dm.train_set[pos][0], _chw(written["train"][0][i], 1, 28))


def test_val_size_zero_validates_on_test_set(tmp_path):
    write_mnist(tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=0)
    dm.setup("fit")
    assert len(dm.train_set) == N_TRAIN and dm.val_set is dm.test_set and len(dm.val_set) == N_TEST


def test_val_size_too_large(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError, match="val_size"):
        MNISTDataModule(data_dir=str(tmp_path), val_size=N_TRAIN).setup("fit")


def test_mnist_gz_files_are_unpacked(tmp_path):
    written = write_mnist(tmp_path, gz=True)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=0)
    dm.prepare_data()
    dm.setup()
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert torch.equal(dm.test_set[0][0], _chw(written["t10k"][0][0], 1, 28))


def test_meta_shape_mismatch_is_caught():
    with pytest.raises(ValueError, match="num_classes"):
        CIFAR100DataModule(meta={"num_classes": 10})


# ----------------------------------------------------------------------------- missing / broken files
@pytest.mark.parametrize("name", list(SPECS))
def test_missing_files_clear_error_without_download(name, tmp_path, no_network):
    cls = SPECS[name][0]
    data_dir = tmp_path / "nowhere"
    dm = cls(data_dir=str(data_dir), download=False)
    for call in (dm.prepare_data, dm.setup):
        with pytest.raises(DatasetNotFoundError) as info:
            call()
        msg = str(info.value)
        assert isinstance(info.value, FileNotFoundError)
        assert str(data_dir.resolve()) in msg and "dataset.download=true" in msg
        for rel in cls.expected_files:
            assert rel.split("/")[-1] in msg
    assert no_network == [] and not data_dir.exists()


def test_missing_files_error_from_relative_dir_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "rel" / "cifar-100-python")):
        CIFAR100DataModule(data_dir="rel").setup()


def test_setup_with_download_on_but_prepare_data_not_run(tmp_path, no_network):
    with pytest.raises(DatasetNotFoundError, match="prepare_data"):
        MNISTDataModule(data_dir=str(tmp_path), download=True).setup()
    assert no_network == []


@pytest.mark.parametrize("name", list(SPECS))
def test_download_without_network_clear_error(name, tmp_path, no_network):
    cls = SPECS[name][0]
    dm = cls(data_dir=str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    msg = str(info.value)
    assert dm.dataset_name in msg and str(tmp_path) in msg and "download" in msg
    assert "network disabled in tests" in msg  # the underlying reason is shown
    assert isinstance(info.value.__cause__, (URLError, RuntimeError))
    assert no_network  # torchvision's download was really attempted (and refused)


def test_partial_cifar_names_what_is_missing(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing: cifar-10-batches-py/data_batch_3\)"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()


def test_cifar_checksum_failure_is_reported_as_corrupt(tmp_path):
    write_cifar10(tmp_path)  # present, but (no skip_md5 here) not the real release's MD5 sums
    with pytest.raises(DatasetCorruptedError, match="corrupt or incomplete") as info:
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    assert str(tmp_path) in str(info.value) and isinstance(info.value, FileNotFoundError)


def test_truncated_mnist_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetCorruptedError, match="corrupt or incomplete"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("test")


def test_broken_mnist_gz_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path, gz=True)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetCorruptedError, match="train-labels-idx1-ubyte.gz"):
        MNISTDataModule(data_dir=str(tmp_path)).prepare_data()


# ----------------------------------------------------------------------------- configs
CONFIGS = {"mnist": MNISTDataModule, "cifar10": CIFAR10DataModule, "cifar100": CIFAR100DataModule}
MODELS = {"mnist": "resnet5", "cifar10": "resnet18", "cifar100": "resnet18"}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_meta_has_the_same_keys_as_digits(name):
    ref = OmegaConf.load(CONF_DIR / "dataset" / "digits.yaml").meta
    meta = OmegaConf.load(CONF_DIR / "dataset" / f"{name}.yaml").meta
    assert list(meta.keys()) == list(ref.keys())
    cls = CONFIGS[name]
    assert (meta.num_classes, meta.channels, meta.image_size) == (cls.num_classes, cls.channels, cls.image_size)
    assert meta.eps == pytest.approx(0.3 if name == "mnist" else 8 / 255)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_instantiates_without_root_config(name, tmp_path):
    """The dataset yaml alone (defaults dropped, data_dir set) builds the right module."""
    from hydra.utils import instantiate

    cfg = OmegaConf.load(CONF_DIR / "dataset" / f"{name}.yaml")
    assert cfg.defaults == [{"/model@_global_.model": MODELS[name]}]
    del cfg["defaults"]
    cfg.data_dir = str(tmp_path)
    dm = instantiate(cfg)
    assert type(dm) is CONFIGS[name] and isinstance(dm, TorchvisionDataModule)
    assert dm.data_dir == str(tmp_path) and dm.download is False and dm.val_size == 5000
    assert dm.meta["name"] == name


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_composes_with_hydra(name, tmp_path):
    """Compose ``+dataset=<name>`` through Hydra (the defaults list pulls in the model config)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    if not (CONF_DIR / "model" / f"{MODELS[name]}.yaml").is_file():
        pytest.skip(f"conf/train/model/{MODELS[name]}.yaml is not written yet")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name=None, overrides=[f"+dataset={name}", f"+paths.data_dir={tmp_path}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)  # model's ${dataset.meta.*} resolve too
    assert resolved["model"]["num_classes"] == CONFIGS[name].num_classes
    dm = instantiate(cfg.dataset)
    assert type(dm) is CONFIGS[name] and dm.data_dir == str(tmp_path)

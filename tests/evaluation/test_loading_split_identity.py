"""Models evaluated side by side must share one test set; training settings do not change it."""

from __future__ import annotations

from afd_lightning.config.run_config import shipped_family, split_identity

BASE = {
    "_target_": "afd_lightning.data.MNIST10kDataModule",
    "split_seed": 0,
    "val_size": 1000,
    "test_size": 1000,
    "batch_size": 50,
    "data_dir": "data",
    "meta": {
        "name": "mnist10k",
        "num_classes": 10,
        "channels": 1,
        "image_size": 28,
        "eps": 0.3,
        "train_attack_steps": 40,
    },
}


def variant(**changes):
    cfg = {**BASE, "meta": dict(BASE["meta"])}
    for key, value in changes.items():
        if key.startswith("meta_"):
            cfg["meta"][key[5:]] = value
        else:
            cfg[key] = value
    return cfg


def test_training_and_loading_settings_do_not_change_the_test_split():
    same = [variant(meta_train_attack_steps=10), variant(meta_eps=0.1), variant(batch_size=128, data_dir="/x")]
    for other in same:
        assert split_identity(other) == split_identity(BASE)


def test_another_split_or_dataset_is_another_test_set():
    for other in (
        variant(split_seed=1),
        variant(test_size=500),
        variant(meta_name="mnist"),
        variant(_target_="afd_lightning.data.MNISTDataModule"),
    ):
        assert split_identity(other) != split_identity(BASE)


def test_mnist10k_uses_the_mnist_eps_tables():
    assert shipped_family("mnist10k") == "mnist"  # dataset.meta.family of conf/train/dataset/mnist10k.yaml
    assert [shipped_family(name) for name in ("digits", "mnist", "cifar10", "cifar100")] == [
        "digits",
        "mnist",
        "cifar",
        "cifar",
    ]
    assert shipped_family("my_own_data") is None

"""The Hydra config tree: every dataset x model x method composes and instantiates, the dataset picks
the threat model, and mistakes (unknown options, networks that do not fit) fail early and clearly."""

from __future__ import annotations

import builtins
import contextlib
import os
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from afd_lightning.attacks import AttackFactory
from afd_lightning.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    MNIST10kDataModule,
    MNISTDataModule,
)
from afd_lightning.errors import ConfigError
from afd_lightning.methods import AFD, TRADES, AdversarialTraining, EmbeddingMatching, NaturalTraining
from afd_lightning.nets import AdversarialDecoder, ImageClassifier
from afd_lightning.nets.build import build_model
from afd_lightning.run.instantiation import check_model_fits
from afd_lightning.train import build

from helpers.compose import CONF, compose_train

DATASETS = {
    "digits": DigitsDataModule,
    "mnist": MNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "mnist10k": MNIST10kDataModule,
}
MODELS = {
    "resnet5_digits": "afd_lightning.nets.resnet5",
    "resnet5": "afd_lightning.nets.resnet5",
    "resnet18": "afd_lightning.nets.resnet18",
    "preact_resnet18": "afd_lightning.nets.preact_resnet18",
    "wrn34_10": "afd_lightning.nets.wide_resnet34_10",
    "lenet": "afd_lightning.nets.lenet",
}
METHODS = {
    "nt": NaturalTraining,
    "at": AdversarialTraining,
    "trades": TRADES,
    "match": EmbeddingMatching,
    "afd": AFD,
}
# WRN-34-10 (46M parameters) is instantiated for this one combination only.
WRN_FULL = ("cifar10", "wrn34_10")


@contextlib.contextmanager
def no_disk_access():
    """Any file-system access inside the block fails the test."""

    def forbidden(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"{name}{args} called while constructing a data module")

        return fail

    patches = [
        (builtins, "open"),
        (os, "makedirs"),
        (os, "mkdir"),
        (os, "listdir"),
        (os, "scandir"),
        (os, "stat"),
        (os.path, "isfile"),
        (os.path, "isdir"),
        (os.path, "exists"),
    ]
    with pytest.MonkeyPatch.context() as mp:
        for module, name in patches:
            mp.setattr(module, name, forbidden(name))
        for cls in (MNISTDataModule, CIFAR10DataModule, CIFAR100DataModule):
            mp.setattr(cls, "torchvision_class", forbidden(f"{cls.__name__}.torchvision_class"))
        yield


def make_datamodule(cfg, tmp_path: Path):
    """The dataset config's data module, constructed without touching the disk (no setup/prepare_data)."""
    name = cfg.dataset.meta.name
    overrides = {}
    if name != "digits":
        overrides["data_dir"] = str(tmp_path / "no_data_here")
    with no_disk_access():
        dm = instantiate(cfg.dataset, **overrides)
    assert type(dm) is DATASETS[name]
    assert dm.train_set is None and dm.val_set is None and dm.test_set is None
    if name != "digits":
        assert not (tmp_path / "no_data_here").exists()
        assert dm.data_dir == str(tmp_path / "no_data_here")
    return dm


def stand_in_for_wrn(cfg):
    """WRN-10-1 with the composed config's channels/classes/normalisation (same family as WRN-34-10)."""
    small = OmegaConf.to_container(cfg.model, resolve=True)
    small.update(_target_="afd_lightning.nets.wide_resnet", depth=10, widen_factor=1)
    return build_model(small)


# =========================================================================== the full matrix
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.slow
def test_dataset_model_method_matrix(dataset, model_name, tmp_path):
    model = dm = None
    for method_name, method_cls in METHODS.items():
        cfg = compose_train([f"dataset={dataset}", f"model={model_name}", f"method={method_name}"], tmp_path)
        assert cfg.model._target_ == MODELS[model_name]
        assert cfg.model.in_channels == DATASETS[dataset].channels
        assert cfg.model.num_classes == DATASETS[dataset].num_classes
        if model is None:  # the model config does not depend on the method: instantiate it once
            dm = make_datamodule(cfg, tmp_path)
            if model_name == "wrn34_10" and (dataset, model_name) != WRN_FULL:
                model = stand_in_for_wrn(cfg)
            else:
                model = build_model(cfg.model)
            assert isinstance(model, ImageClassifier) and model.num_classes == dm.num_classes
            check_model_fits(model, dm)  # raises ConfigError if it does not fit
        attack, eval_attack = instantiate(cfg.attack), instantiate(cfg.eval_attack)
        assert isinstance(attack, AttackFactory) and isinstance(eval_attack, AttackFactory)
        method = instantiate(cfg.method, model=model, attack=attack, eval_attack=eval_attack)
        assert type(method) is method_cls
        assert method.model is model and method.attack is attack and method.eval_attack is eval_attack
        optimizers = method.configure_optimizers()
        assert optimizers  # the optimizer and scheduler factories instantiate too
        if method_name == "afd":
            disc = method.discriminator
            assert isinstance(disc, AdversarialDecoder)
            assert disc.embed_dim == model.embed_dim
            assert disc.num_classes == dm.num_classes
            assert disc.hidden_dim == cfg.dataset.meta.disc_hidden_dim
            assert disc(torch.zeros(2, model.embed_dim), torch.tensor([0, 1])).shape == (2,)


@pytest.mark.parametrize(
    "dataset, overrides, pattern",
    [
        (
            "cifar10",
            ["model=lenet", "model.image_size=28"],
            r"cannot take CIFAR10DataModule images of shape \(3, 32, 32\)",
        ),
        ("cifar10", ["model=resnet18", "model.in_channels=1"], r"cannot take CIFAR10DataModule"),
        ("mnist", ["model=lenet", "model.image_size=32"], r"cannot take MNISTDataModule images of shape \(1, 28, 28\)"),
        (
            "cifar100",
            ["model=resnet5", "model.num_classes=10"],
            r"outputs \(10,\) logits but CIFAR100DataModule has 100",
        ),
    ],
)
def test_model_that_does_not_fit_raises_config_error(dataset, overrides, pattern, tmp_path):
    cfg = compose_train([f"dataset={dataset}", *overrides], tmp_path)
    dm = make_datamodule(cfg, tmp_path)
    model = build_model(cfg.model)
    with pytest.raises(ConfigError, match=pattern):
        check_model_fits(model, dm)


@pytest.mark.slow
def test_build_rejects_a_model_that_does_not_fit_before_training(tmp_path, monkeypatch):
    trainers = []
    original_init = pl.Trainer.__init__

    def recording_init(self, *args, **kwargs):
        trainers.append(kwargs)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", recording_init)
    cfg = compose_train(["dataset=cifar10", "model=lenet", "model.image_size=28"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"shape \(3, 32, 32\).*model="):
        build(cfg)
    assert trainers == []  # failed before any Trainer was made
    assert not (tmp_path / "run").exists()

    # the same composition with the matching image size builds (the failure above is the size, nothing else)
    cfg = compose_train(["dataset=cifar10", "model=lenet"], tmp_path / "run2")
    datamodule, method, trainer = build(cfg)
    assert isinstance(method, AFD) and len(trainers) == 1


@pytest.mark.slow
def test_default_model_per_dataset(tmp_path):
    expected = {
        "digits": ("afd_lightning.nets.resnet5", 1),
        "mnist": ("afd_lightning.nets.resnet5", 2),
        "cifar10": ("afd_lightning.nets.resnet18", None),
        "cifar100": ("afd_lightning.nets.resnet18", None),
    }
    for dataset, (target, stem_stride) in expected.items():
        cfg = compose_train([f"dataset={dataset}"], tmp_path)
        assert cfg.model._target_ == target, dataset
        assert cfg.model.get("stem_stride") == stem_stride, dataset
        assert cfg.method._target_ == "afd_lightning.methods.AFD"  # AFD is the default method
        assert cfg.attack.name == "pgd_linf" and cfg.eval_attack.name == "pgd_linf_eval"


# =========================================================================== the dataset picks the threat model
THREAT = {
    #            eps      train steps, step      eval steps, step   Da width momentum batch
    "digits": (0.2, 10, 0.05, 20, 0.025, 200, 0.9, 50),
    "mnist": (0.3, 40, 0.01, 40, 0.01, 200, 0.9, 50),
    "cifar10": (8 / 255, 20, 2 / 255, 20, 2 / 255, 512, 0.8, 64),
    "cifar100": (8 / 255, 20, 2 / 255, 20, 2 / 255, 512, 0.8, 64),
}


@pytest.mark.parametrize("dataset", list(THREAT))
@pytest.mark.slow
def test_dataset_sets_threat_model_and_hyperparameters(dataset, tmp_path):
    eps, steps, step, eval_steps, eval_step, hidden, momentum, batch = THREAT[dataset]
    cfg = compose_train([f"dataset={dataset}"], tmp_path, fast=False)
    attack, eval_attack = instantiate(cfg.attack), instantiate(cfg.eval_attack)
    assert attack.eps == pytest.approx(eps, abs=1e-7) and eval_attack.eps == pytest.approx(eps, abs=1e-7)
    assert (attack.steps, eval_attack.steps) == (steps, eval_steps)
    assert attack.step_size == pytest.approx(step, abs=1e-7)
    assert eval_attack.step_size == pytest.approx(eval_step, abs=1e-7)
    assert attack.attack_cls.__name__ == eval_attack.attack_cls.__name__ == "LinfPGDAttack"
    assert attack.rand_init is True and (attack.clip_min, attack.clip_max) == (0.0, 1.0)

    disc = instantiate(cfg.method.discriminator)(embed_dim=16)
    assert disc.hidden_dim == hidden and disc.num_classes == DATASETS[dataset].num_classes
    for key in ("optimizer_cls", "optimizer_disc", "optimizer_enc"):
        assert cfg.method[key].momentum == momentum
    assert (cfg.method.optimizer_cls.lr, cfg.method.optimizer_disc.lr, cfg.method.optimizer_enc.lr) == (0.1, 0.1, 0.5)
    assert cfg.dataset.batch_size == batch
    for method in ("nt", "at", "trades", "match"):  # the baselines share the dataset's momentum
        assert (
            compose_train([f"dataset={dataset}", f"method={method}"], fast=False).method.optimizer.momentum == momentum
        )


def test_cifar_eps_is_8_over_255(tmp_path):
    cfg = compose_train(["dataset=cifar10"], tmp_path, fast=False)
    assert instantiate(cfg.attack).eps == pytest.approx(0.0313725, abs=1e-7)
    assert instantiate(cfg.eval_attack).steps == 20


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
@pytest.mark.slow
def test_attack_eps_override_wins(dataset, tmp_path):
    cfg = compose_train([f"dataset={dataset}", "attack.eps=0.1"], tmp_path, fast=False)
    assert instantiate(cfg.attack).eps == 0.1
    # only the training attack: the evaluation attack keeps the dataset's threat model
    assert instantiate(cfg.eval_attack).eps == pytest.approx(THREAT[dataset][0], abs=1e-7)
    # attacks whose step is derived from eps follow the override
    cfg = compose_train([f"dataset={dataset}", "attack=mim", "attack.eps=0.1"], tmp_path, fast=False)
    mim = instantiate(cfg.attack)
    assert mim.eps == 0.1 and mim.step_size == pytest.approx(0.1 / THREAT[dataset][1])


# =========================================================================== mistakes
@pytest.mark.parametrize(
    "override, choices",
    [
        ("method=foo", ["afd", "at", "match", "nt", "trades"]),
        ("dataset=foo", ["cifar10", "cifar100", "digits", "mnist"]),
        ("model=foo", list(MODELS)),
        ("attack=foo", ["pgd_linf", "pgd_l2", "pgd_l1", "fgsm", "mim"]),
    ],
)
def test_unknown_group_option_lists_choices(override, choices):
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as excinfo:
        compose_train([override])
    message = str(excinfo.value)
    assert "foo" in message
    listed = re.findall(r"^\t(\S+)$", message, flags=re.MULTILINE)
    for choice in choices:
        assert choice in listed, (choice, message)


# =========================================================================== experiment presets
@pytest.mark.slow
def test_experiment_presets_compose(tmp_path):
    presets = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
    for name in presets:
        cfg = compose_train([f"experiment={name}"], tmp_path)
        dm = make_datamodule(cfg, tmp_path)
        model = build_model(cfg.model)
        assert isinstance(model, ImageClassifier)
        check_model_fits(model, dm)
        method = instantiate(
            cfg.method, model=model, attack=instantiate(cfg.attack), eval_attack=instantiate(cfg.eval_attack)
        )
        assert method.configure_optimizers()
        assert get_class(cfg.trainer._target_) is pl.Trainer
        match = re.fullmatch(r"paper_([a-z0-9]+)_([a-z]+)", name)
        if match:  # paper_<dataset>_<method>: the preset selects that dataset and method
            assert cfg.dataset.meta.name == match.group(1)
            assert type(method) is METHODS[match.group(2)]
    # whatever presets exist, an unknown one is refused with the list of those that do
    with pytest.raises(MissingConfigException) as excinfo:
        compose_train(["experiment=no_such_preset"])
    listed = re.findall(r"^\t(\S+)$", str(excinfo.value), flags=re.MULTILINE)
    assert sorted(listed) == presets

"""Issue 17, cases 1-3 and 5 (config part), and issue 20's ``trust``: a stored config is plain data checked
against per-slot, per-argument schemas before anything is built.

Every crafted checkpoint is made from an untrained digits network built in-process (no training); each
payload would leave a marker file if it ran, and the marker must not appear.
"""

from __future__ import annotations

import textwrap
import time

import pytest
import torch
from omegaconf import OmegaConf

from afd_lightning.methods import NaturalTraining, RobustMethod
from afd_lightning.store.classifier import load_classifier
from afd_lightning.store.stored_config import (
    MAX_NODES,
    MAX_PARAMETERS,
    OutsideCodeError,
    StoredConfigLimitError,
    UnsafeConfigError,
    build,
    check_slot,
    check_stored,
    plain,
)

from helpers.crafted import edited, genuine_parts, write


@pytest.fixture(scope="module")
def nt_parts(tmp_path_factory):
    return genuine_parts("nt", tmp_path_factory.mktemp("nt") / "run")


def refused(fn, marker, *fragments, error=UnsafeConfigError):
    with pytest.raises(error) as info:
        fn()
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert not marker.exists(), "the payload ran"
    return str(info.value)


# ------------------------------------------------------------------ 1. nothing is resolved from a file
def open_payload(marker) -> str:
    return "${oc.create:{_target_: builtins.open, _args_: [" + str(marker) + ", w]}}"


@pytest.mark.slow
def test_interpolation_in_a_network_field_is_refused_by_load_classifier(nt_parts, tmp_path):
    marker = tmp_path / "opened"
    path = edited(nt_parts, tmp_path / "c.ckpt", lambda c: c["model"].update(mean=open_payload(marker)))
    refused(lambda: load_classifier(path), marker, "model.mean", "interpolation")


def test_interpolation_in_an_optimizer_argument_is_refused_by_load_from_checkpoint(nt_parts, tmp_path):
    marker = tmp_path / "opened"
    path = edited(nt_parts, tmp_path / "c.ckpt", lambda c: c["method"]["optimizer"].update(lr=open_payload(marker)))
    refused(lambda: RobustMethod.load_from_checkpoint(path), marker, "method.optimizer.lr", "interpolation")


def test_interpolation_anywhere_in_the_stored_config_is_refused_by_load_from_checkpoint(nt_parts, tmp_path):
    """Even in parts never built (the trainer): the hyperparameters handed to loggers are plain too."""
    path = edited(nt_parts, tmp_path / "c.ckpt", lambda c: c["trainer"].update(default_root_dir="${oc.env:HOME}"))
    refused(lambda: RobustMethod.load_from_checkpoint(path), tmp_path / "none", "trainer.default_root_dir")


def test_interpolation_in_the_dataset_meta_is_refused_by_the_evaluation(nt_parts, tmp_path):
    from afd_lightning.evaluation.loading import load_samples

    marker = tmp_path / "opened"
    dataset = dict(nt_parts[0]["dataset"], meta={**nt_parts[0]["dataset"]["meta"], "mean": open_payload(marker)})
    cfg = OmegaConf.create({"data_dir": None, "n_samples": 4, "seed": 0})
    refused(lambda: load_samples(dataset, cfg), marker, "dataset.meta.mean", "interpolation")


def test_omegaconf_nodes_are_converted_with_resolvers_off():
    node = OmegaConf.create({"_target_": "afd_lightning.nets.lenet", "mean": "${oc.env:HOME}"})
    with pytest.raises(UnsafeConfigError, match=r"model\.mean="):
        plain(node, "test", "model")


def test_what_is_checked_is_what_is_built(nt_parts):
    """build() takes the checked plain dict itself: no Hydra, no OmegaConf, nothing resolved in between."""
    checked = check_slot(nt_parts[0]["model"], "model")
    assert all(type(v) in (str, int, float, bool, list, type(None)) for v in checked.values())
    model = build({k: v for k, v in checked.items() if k not in ("channels_last", "compile")})
    assert model.embed_dim == checked["embed_dim"]


# ------------------------------------------------------------------ 2. attack_cls by name and by position
ATTACK = "afd_lightning.attacks.AttackFactory"


@pytest.mark.parametrize("bad", ["subprocess.Popen", "builtins.open", "advertorch.attacks.base.os"])
def test_attack_class_by_position_is_checked(bad):
    with pytest.raises(UnsafeConfigError, match="attack.attack_cls"):
        check_stored({"attack": {"_target_": ATTACK, "_args_": [bad, 0.1]}})


def test_attack_class_by_position_of_an_allowed_attack_builds():
    factory = build(check_slot({"_target_": ATTACK, "_args_": ["advertorch.attacks.LinfPGDAttack", 0.1]}, "attack"))
    assert factory.eps == 0.1 and factory.attack_cls.__name__ == "LinfPGDAttack"


def test_an_argument_given_by_position_and_by_name_is_refused():
    node = {"_target_": ATTACK, "_args_": ["advertorch.attacks.LinfPGDAttack"], "attack_cls": "builtins.open"}
    with pytest.raises(UnsafeConfigError, match="both by position"):
        check_slot(node, "attack")


def test_an_attack_extra_must_be_an_argument_of_its_attack_class():
    node = {"_target_": ATTACK, "attack_cls": "advertorch.attacks.LinfPGDAttack", "eps": 0.1, "loss_fn": "x"}
    with pytest.raises(UnsafeConfigError, match="attack.loss_fn"):
        check_slot(node, "attack")


# ------------------------------------------------------------------ 3. per-slot, per-argument schemas
def test_dataset_paths_executables_and_fetches_never_come_from_the_file(tmp_path):
    marker_dir = tmp_path / "made-by-the-file"
    script = tmp_path / "evil-npm"
    stored = {
        "_target_": "afd_lightning.data.MNIST10kDataModule",
        "data_dir": str(marker_dir),
        "fetch": True,
        "npm": str(script),
        "sha256": "0" * 64,
        "val_size": 10,
        "test_size": 10,
    }
    checked = check_slot(stored, "dataset", user={"data_dir": str(tmp_path / "mine")})
    assert {"fetch", "npm", "sha256"}.isdisjoint(checked) and checked["data_dir"] == str(tmp_path / "mine")
    datamodule = build(checked)
    assert datamodule.npm == "npm" and datamodule.sha256 != "0" * 64  # the class's defaults
    assert datamodule.data_dir == str(tmp_path / "mine")
    assert not marker_dir.exists()


def test_an_optimizer_in_the_model_slot_gets_a_clear_refusal(nt_parts, tmp_path):
    path = edited(nt_parts, tmp_path / "c.ckpt", lambda c: c.update(model={"_target_": "torch.optim.SGD", "lr": 0.1}))
    refused(
        lambda: load_classifier(path), tmp_path / "none", "model._target_='torch.optim.SGD'", "cannot sit in the model"
    )


@pytest.mark.parametrize(
    ("slot", "node", "fragment"),
    [
        ("model", {"_target_": "afd_lightning.nets.resnet5", "embed_dim": "200"}, "model.embed_dim"),
        ("model", {"_target_": "afd_lightning.nets.resnet5", "no_such": 1}, "model.no_such"),
        ("model", {"_target_": "afd_lightning.nets.resnet5", "_partial_": True}, "_partial_"),
        ("model", {"_target_": "afd_lightning.nets.resnet5", "_recursive_": False}, "_recursive_"),
        ("method", {"_target_": "afd_lightning.methods.NaturalTraining", "model": {}}, "method.model"),
        (
            "method",
            {
                "_target_": "afd_lightning.methods.NaturalTraining",
                "optimizer": {"_target_": "torch.optim.lr_scheduler.StepLR"},
            },
            "optimizer",
        ),
        (
            "dataset",
            {"_target_": "afd_lightning.data.DigitsDataModule", "meta": {"x": {"_target_": "builtins.open"}}},
            "dataset.meta.x",
        ),
        ("attack", {"_target_": "afd_lightning.data.DigitsDataModule"}, "attack._target_"),
    ],
)
def test_schema_refusals_name_the_key(slot, node, fragment):
    with pytest.raises(UnsafeConfigError) as info:
        check_slot(node, slot)
    assert fragment in str(info.value)


@pytest.mark.slow
def test_every_shipped_dataset_method_and_attack_passes_its_schema():
    """Each dataset (with its network) once with AFD, each method once on digits, each training attack."""
    from hydra import compose, initialize_config_dir

    from afd_lightning.config.paths import config_dir

    pairs = [(d, "afd") for d in ("digits", "mnist10k", "mnist", "cifar10", "cifar100")]
    pairs += [("digits", m) for m in ("nt", "at", "trades", "match")]
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        for dataset, method in pairs:
            cfg = compose("train", overrides=[f"dataset={dataset}", f"method={method}", "paths.output_dir=/x"])
            check_stored(
                {
                    k: OmegaConf.to_container(cfg[k], resolve=True)
                    for k in ("model", "dataset", "method", "attack", "eval_attack")
                }
            )
        for attack in ("fgsm", "mim", "pgd_l1", "pgd_l2", "apgd_ce", "pgd_linf_eval"):
            cfg = compose("train", overrides=[f"attack={attack}", "paths.output_dir=/x"])
            check_slot(OmegaConf.to_container(cfg.attack, resolve=True), "attack")


# ------------------------------------------------------------------ 5. bounded (config part)
@pytest.mark.slow
def test_a_dag_of_shared_references_is_stopped_quickly():
    node: list = ["leaf"]
    for _ in range(25):  # 2^25 paths in 25 lists (within the depth bound: the node bound must stop it)
        node = [node, node]
    start = time.perf_counter()
    with pytest.raises(StoredConfigLimitError, match=str(MAX_NODES)):
        plain({"model": {"_target_": "afd_lightning.nets.lenet", "mean": node}}, "crafted.ckpt")
    assert time.perf_counter() - start < 2.0


def test_a_cycle_is_refused():
    cycle: dict = {"_target_": "afd_lightning.nets.lenet"}
    cycle["mean"] = [cycle]
    with pytest.raises(UnsafeConfigError, match="cycle"):
        plain(cycle, "crafted.ckpt", "model")


def test_a_huge_network_is_refused_before_allocation(nt_parts, tmp_path):
    path = edited(nt_parts, tmp_path / "c.ckpt", lambda c: c["model"].update(embed_dim=10**8))
    message = refused(
        lambda: load_classifier(path), tmp_path / "none", str(path), f"{MAX_PARAMETERS:,}", error=StoredConfigLimitError
    )
    assert "parameters" in message


# ------------------------------------------------------------------ issue 20: trust from the caller only
MYNETS = textwrap.dedent(
    """
    import os  # an attribute walk target: mynets.os.system must stay refused

    import torch
    from torch import nn


    class SmallNet(nn.Module):
        def __init__(self, num_classes: int = 10, embed_dim: int = 16):
            super().__init__()
            self.embed_dim, self.num_classes = embed_dim, num_classes
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, embed_dim), nn.ReLU())
            self.classifier = nn.Linear(embed_dim, num_classes)

        def forward_with_embedding(self, x):
            z = self.encoder(x)
            return z, self.classifier(z)

        def forward(self, x):
            return self.forward_with_embedding(x)[1]
    """
)


@pytest.fixture
def mynets(tmp_path, monkeypatch, nt_parts):
    """A user's package ``mynets`` on sys.path, and a checkpoint of an NT run with its SmallNet."""
    from afd_lightning.run.instantiation import instantiate

    package = tmp_path / "pkg" / "mynets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(MYNETS)
    monkeypatch.syspath_prepend(str(package.parent))
    import importlib

    module = importlib.import_module("mynets")
    config = dict(nt_parts[0], model={"_target_": "mynets.SmallNet", "num_classes": 10, "embed_dim": 16})
    method = instantiate(nt_parts[0]["method"], model=module.SmallNet(), attack=None, eval_attack=None)
    yield module, write(tmp_path / "mine.ckpt", config, method.state_dict())
    import sys

    sys.modules.pop("mynets", None)


def test_a_network_of_your_own_is_refused_without_trust_and_the_message_names_the_option(mynets):
    _, path = mynets
    message = refused(
        lambda: load_classifier(path),
        path.parent / "none",
        "names code outside afd-lightning",
        "trust=['mynets']",
        error=OutsideCodeError,
    )
    assert "never from the file" in message


def test_trust_loads_your_own_network(mynets):
    module, path = mynets
    model = load_classifier(path, trust=["mynets"])
    assert isinstance(model, module.SmallNet) and not model.training
    method = RobustMethod.load_from_checkpoint(path, trust=["mynets"])
    assert isinstance(method, NaturalTraining) and isinstance(method.model, module.SmallNet)
    assert torch.equal(method.model.classifier.weight, model.classifier.weight)


def test_model_argument_loads_weights_into_a_module_you_built(mynets):
    module, path = mynets
    mine = module.SmallNet()
    loaded = load_classifier(path, model=mine)
    assert loaded is mine and not mine.training
    assert torch.equal(
        mine.classifier.weight, torch.load(path, weights_only=True)["state_dict"]["model.classifier.weight"]
    )


@pytest.mark.parametrize(
    ("target", "trust"),
    [
        ("mynets.os.system", ["mynets"]),  # an attribute walk through the trusted package
        ("mynets.torch.load", ["mynets"]),
        ("mynets.SmallNet", ["othernets"]),  # trust never widens to modules the caller did not name
        ("mynetsevil.SmallNet", ["mynets"]),  # a prefix is a whole module name
    ],
)
def test_trust_never_widens_beyond_what_the_caller_named(mynets, nt_parts, tmp_path, target, trust):
    _, path = mynets
    bad = edited(nt_parts, tmp_path / "bad.ckpt", lambda c: c.update(model={"_target_": target}))
    with pytest.raises(UnsafeConfigError):
        load_classifier(bad, trust=trust)


def test_trust_covers_the_model_slot_only(mynets, nt_parts, tmp_path):
    bad = edited(nt_parts, tmp_path / "bad.ckpt", lambda c: c["method"].update(_target_="mynets.SmallNet"))
    with pytest.raises(UnsafeConfigError, match="method._target_"):
        RobustMethod.load_from_checkpoint(bad, trust=["mynets"])


def test_eval_takes_trust_from_its_own_config(mynets):
    from afd_lightning.evaluation.loading import load_models

    module, path = mynets
    cfg = OmegaConf.create({"ckpt_path": str(path), "names": None, "source_ckpt": None, "trust": []})
    with pytest.raises(OutsideCodeError, match="trust="):
        load_models(cfg)
    cfg.trust = ["mynets"]
    models, _ = load_models(cfg)
    assert isinstance(next(iter(models.values())).model, module.SmallNet)

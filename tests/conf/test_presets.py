"""The recipe presets: each composes to what its source says, cites a source for every value, and its
digits analogue trains one short epoch offline."""

from __future__ import annotations

import json
import math
import re

import pytest

from afd_lightning.attacks import APGDCE
from afd_lightning.run.instantiation import instantiate
from afd_lightning.train import run

from helpers.compose import CONF, compose_train

# preset -> (dataset, method class); the mnist10k presets belong to their dataset's own tests.
PAPER = {
    f"paper_{d}_{m}": (d, c)
    for d in ("mnist", "cifar10", "cifar100", "digits")
    for m, c in (("nt", "NaturalTraining"), ("at", "AdversarialTraining"), ("trades", "TRADES"), ("afd", "AFD"))
}
OFFICIAL = {f"official_{d}_afd": (d, "AFD") for d in ("mnist", "cifar10", "cifar100", "digits")}
OFFICIAL |= {
    f"official_{d}_{m}": (d, c)
    for d in ("cifar10", "digits")
    for m, c in (("at", "AdversarialTraining"), ("trades", "TRADES"))
}
PRESETS = PAPER | OFFICIAL
DIGITS = sorted(p for p in PRESETS if "_digits_" in p)
# Every full-size recipe has a digits analogue that runs offline.
assert {re.sub(r"_(mnist|cifar10|cifar100)_", "_digits_", p) for p in PRESETS} <= set(PRESETS)
# Tiny training for the analogues: two batches, one epoch, two attack steps.
TINY = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "dataset.meta.train_attack_steps=2",
    "dataset.meta.eval_attack_steps=2",
    "attack.steps=2",
]


def target_name(node) -> str:
    return str(node._target_).rpartition(".")[2]


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.slow
def test_preset_composes_to_its_dataset_and_method(preset):
    cfg = compose_train([f"experiment={preset}"], fast=False)
    dataset, method = PRESETS[preset]
    assert cfg.dataset.meta.name == dataset and target_name(cfg.method) == method
    official = preset.startswith("official_")
    if method == "AFD":
        wds = [cfg.method[k].weight_decay for k in ("optimizer_cls", "optimizer_disc", "optimizer_enc")]
        da = cfg.method.discriminator
        # official: WD on E+Dc only, WGAN, 2-layer Xavier Da, normalised embedding (afd_train.py, models/)
        assert wds == ([1e-4, 0.0, 0.0] if official else [1e-4, 1e-4, 1e-4])
        assert cfg.method.gan_loss == ("wgan" if official else "softplus")
        assert (da.num_hidden_layers, da.init) == ((2, "xavier") if official else (3, "default"))
        assert [cfg.method[k].lr for k in ("optimizer_cls", "optimizer_enc")] == [0.1, 0.5]
    if method != "TRADES":
        assert target_name(cfg.attack) == "AttackFactory"
        assert cfg.attack.attack_cls.endswith("APGDCE" if official else "LinfPGDAttack")
        if official:
            assert cfg.attack.failed_samples == "clean" and cfg.attack.n_restarts == 1
    assert cfg.model.normalize_embedding is (official and method != "TRADES")


@pytest.mark.slow
def test_official_cifar10_afd_is_the_authors_code():
    """The issue's check of `train.py experiment=official_cifar10_afd --cfg job`, value by value."""
    cfg = compose_train(["experiment=official_cifar10_afd"], fast=False)
    attack = instantiate(cfg.attack)
    assert attack.attack_cls is APGDCE and attack.steps == 20 and math.isclose(attack.eps, 8 / 255, rel_tol=1e-6)
    assert cfg.model.normalize_embedding and cfg.model.mean is None  # resnet18norm, no input normalisation
    da = instantiate(cfg.method.discriminator)(embed_dim=512)
    assert da.num_hidden_layers == 2 and da.hidden_dim == 512
    opts = [instantiate(cfg.method[k]) for k in ("optimizer_cls", "optimizer_disc", "optimizer_enc")]
    groups = [o(params=[da.linear.parametrizations.weight.original]).param_groups[0] for o in opts]
    assert [(g["lr"], g["momentum"], g["weight_decay"]) for g in groups] == [
        (0.1, 0.9, 1e-4),
        (0.1, 0.9, 0.0),
        (0.5, 0.9, 0.0),
    ]
    assert cfg.method.gan_loss == "wgan" and cfg.dataset.batch_size == 128
    assert cfg.trainer.max_epochs == 300 and list(cfg.lr_milestones) == [150, 250]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_value_cites_a_source(preset):
    """A `key: value` line carries a comment, or follows a comment line that explains it."""
    lines = (CONF / "experiment" / f"{preset}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_" and lines[1].startswith("# ")
    body = [i for i, line in enumerate(lines) if line and not line.startswith(("#", "defaults:", "  - "))]
    for i in body:
        code = lines[i].split("#")[0].rstrip()
        if re.fullmatch(r"\s*[\w.]+:\s*\S.*", code):
            assert "#" in lines[i] or lines[i - 1].lstrip().startswith("#"), f"{preset}.yaml:{i + 1}: {lines[i]!r}"


@pytest.mark.parametrize("preset", DIGITS)
@pytest.mark.slow
def test_digits_analogue_trains(preset, tmp_path):
    cfg = compose_train([f"experiment={preset}", *TINY], tmp_path / preset)
    metrics = run(cfg)
    saved = json.loads((tmp_path / preset / "metrics.json").read_text())
    for key in ("val/acc_clean", "val/acc_adv", "test/acc_clean", "test/acc_adv"):
        assert 0.0 <= saved[key] <= 1.0 and saved[key] == pytest.approx(metrics[key])
    assert (tmp_path / preset / "checkpoints" / "last.ckpt").is_file()

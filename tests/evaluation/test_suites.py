"""Suites compose and their attacks run: paper_exact's Foolbox attacks, the quick suite's settings."""

from __future__ import annotations

import pytest
import torch
from omegaconf import open_dict

from afd_lightning.data import DigitsDataModule
from afd_lightning.evaluation.attacks.base import perturbation_norm
from afd_lightning.evaluation.loading import build_attacks
from afd_lightning.evaluation.pipeline import validate_settings

from helpers.evaluation import compose_eval


def _suite(name, tmp_path, extra=()):
    cfg = compose_eval([f"suite={name}", "ckpt_path=x", *extra], tmp_path)
    with open_dict(cfg):
        cfg.family = "digits"
    return cfg


@pytest.mark.slow
def test_paper_exact_is_foolbox_independent_and_the_whole_test_set(tmp_path):
    cfg = _suite("paper_exact", tmp_path)
    validate_settings(cfg)
    assert cfg.sweep_mode == "independent" and cfg.suite.n_samples is None
    attacks, transfer = build_attacks(cfg)
    lib = {a.name: a.describe().get("attack_cls", "") for a in attacks}
    for name in ("pgd_linf", "pgd_l2", "pgd_l1", "fgsm", "mim", "ddn", "cw", "deepfool", "boundary"):
        assert lib[name].startswith("foolbox."), (name, lib[name])
    assert transfer == ["pgd_linf", "fgsm"]


@pytest.mark.slow
def test_quick_suite_is_small_and_skips_the_analyses(tmp_path):
    cfg = _suite("quick", tmp_path)
    validate_settings(cfg)
    assert cfg.analyses is False and cfg.sweep_mode == "survivors"
    attacks, _ = build_attacks(cfg)
    assert [a.name for a in attacks] == ["pgd_linf", "fgsm", "apgd_ce", "square"]
    square = attacks[-1]
    assert square.gradient_free and square.n_queries == 500 and square.stage_names == ["square"]
    assert attacks[2].stage_names == ["apgd-ce"] and attacks[2].n_iter == 50
    assert _suite("quick", tmp_path, ["analyses=true"]).analyses is True  # the user's word wins


@pytest.mark.parametrize("name", ["pgd_linf", "pgd_l2", "fgsm", "mim", "ddn", "cw"])
@pytest.mark.slow
def test_paper_exact_foolbox_attacks_run_inside_their_budget(name, tmp_path):
    torch.manual_seed(0)
    from afd_lightning.nets import resnet5

    model = resnet5(in_channels=1, num_classes=10, stem_stride=1, embed_dim=16, mean=[0.5], std=[0.5]).eval()
    dm = DigitsDataModule()
    dm.setup("test")
    x, y = dm.test_set.tensors
    x, y = x[:6].float(), y[:6]
    tiny = {"pgd_linf": "steps=3", "pgd_l2": "steps=3", "mim": "steps=3", "ddn": "steps=5", "cw": "steps=5"}
    extra = [f"suite.attacks.{name}.{tiny[name]}"] if name in tiny else []
    cfg = _suite("paper_exact", tmp_path, extra + (["suite.attacks.cw.binary_search_steps=2"] if name == "cw" else []))
    attack = next(a for a in build_attacks(cfg)[0] if a.name == name)
    if attack.kind == "min_norm":
        norms = attack.min_norms(model, x, y)
        assert norms.shape == (6,) and (norms >= 0).all()
    else:
        eps = attack.eps[2]
        x_adv = attack.perturb(model, x, y, eps)
        assert (perturbation_norm(x_adv - x, attack.norm) <= eps * (1 + 1e-4) + 1e-6).all()
        assert x_adv.min() >= 0 and x_adv.max() <= 1

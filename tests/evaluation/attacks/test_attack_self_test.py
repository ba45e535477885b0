"""Every attack config of the suites breaks a naturally trained (NT) digits model at its largest eps.

The NT model is trained inside the test session (helpers.evaluation.nt_ckpt, 4 epochs). This is the
attack self-test of issue 12: an attack that cannot bring an undefended model to ~0% would make
every robustness number above it an overestimate.
"""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import afd_lightning
from afd_lightning.attacks import attack_mode
from afd_lightning.config.paths import config_dir
from afd_lightning.data import DigitsDataModule
from afd_lightning.evaluation.sweep import predict, run_curve
from afd_lightning.run.instantiation import instantiate

ATTACKS = sorted(p.stem for p in (config_dir("eval") / "attack").glob("*.yaml"))
# Only the sample count and Boundary's step count are cut (to keep the test in seconds); every other
# setting is the config's own.
SMALL = {"boundary": ["attack.steps=1000"]}


def build(name: str, extra=()):
    with initialize_config_dir(config_dir=str(config_dir("eval")), version_base="1.3"):
        cfg = compose("eval", overrides=[f"attack={name}", "ckpt_path=x", "output_dir=x", "family=digits", *extra])
    spec = OmegaConf.to_container(cfg.attack, resolve=True)
    spec.pop("by_family")
    return instantiate({k: v for k, v in spec.items() if v is not None or k == "n_samples"})


@pytest.fixture(scope="module")
def nt_and_data(nt_ckpt):  # noqa: F811
    dm = DigitsDataModule()
    dm.setup("test")
    x, y = dm.test_set.tensors
    return afd_lightning.load_classifier(nt_ckpt), x[:40].float(), y[:40]


def test_every_suite_attack_has_a_config_here():
    suites = config_dir("eval") / "suite"
    used = {
        line.split(":")[-1].strip()
        for f in suites.glob("*.yaml")
        for line in f.read_text().splitlines()
        if line.strip().startswith("- /attack@")
    }
    assert used <= set(ATTACKS) and {"pgd_margin", "pgd_dlr", "pgd_embedding", "pgd_targeted", "apgd_ce"} <= used


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.slow
def test_attack_breaks_a_natural_model_at_its_largest_eps(name, nt_and_data):
    model, x, y = nt_and_data
    attack = build(name, SMALL.get(name, ()))
    with attack_mode(model):
        correct = predict(model, x, 64) == y
    assert correct.float().mean() > 0.85
    curve = run_curve(model, attack, x, y, correct, batch_size=64, seed=0)
    acc = curve.accuracy_at(max(attack.eps))
    limit = 0.10 if attack.gradient_free else 0.05
    assert acc <= limit + 1e-6, f"{name} leaves {acc:.1%} of an NT model correct at eps={max(attack.eps)}"
    assert curve.accuracy[0] == pytest.approx(float(correct.float().mean()))
    if name == "autoattack":  # the breakdown is cumulative and ends at the attack's own accuracy
        rec = curve.to_record()
        assert list(rec.breakdown) == ["apgd-ce", "apgd-t", "fab-t", "square"]
        steps = [rec.breakdown[s][-1] for s in rec.breakdown]
        assert steps == sorted(steps, reverse=True) and steps[-1] == pytest.approx(rec.accuracy[-1])


@pytest.mark.slow
def test_adaptive_attacks_stay_in_the_ball_and_do_their_own_thing(nt_and_data):
    from afd_lightning.evaluation.attacks.adaptive import most_likely_wrong

    model, x, y = nt_and_data
    for objective in ("margin", "dlr", "embedding", "targeted"):
        attack = build(f"pgd_{objective}", ["attack.steps=5"])
        x_adv = attack.perturb(model, x, y, 0.2)
        assert (x_adv - x).abs().max() <= 0.2 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        assert not any(p.grad is not None for p in model.parameters())
    targeted = build("pgd_targeted", ["attack.eps=[0,0.5]"])
    with torch.no_grad():
        target = most_likely_wrong(model(x), y)
        hit = model(targeted.perturb(model, x, y, 0.5)).argmax(1) == target
    assert hit.float().mean() > 0.8  # it goes where it was sent, not just anywhere wrong


@pytest.mark.slow
def test_dense_pgd_l1_is_not_weaker_than_advertorch_sparse_steps(nt_and_data):
    from afd_lightning.evaluation.attacks.advertorch import NormBallAttack

    model, x, y = nt_and_data
    dense = build("pgd_l1")
    sparse = NormBallAttack(
        "l1_sparse", "l1", dense.eps, "advertorch.attacks.L1PGDAttack", steps=50, rel_step_size=0.025, rand_init=True
    )
    with attack_mode(model):
        correct = predict(model, x, 64) == y
    a = run_curve(model, dense, x, y, correct, seed=0).accuracy_at(16)
    b = run_curve(model, sparse, x, y, correct, seed=0).accuracy_at(16)
    x_adv = dense.perturb(model, x, y, 8.0)
    assert (x_adv - x).abs().flatten(1).sum(1).max() <= 8.0 + 1e-3
    assert a <= b

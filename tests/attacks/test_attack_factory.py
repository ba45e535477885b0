"""Attacks built from the real configs: threat-model geometry, and no side effects on the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from afd_lightning.attacks import AttackFactory
from afd_lightning.data import DigitsDataModule
from afd_lightning.errors import ConfigError
from afd_lightning.nets import resnet5
from afd_lightning.run import instantiation
from afd_lightning.train import build

from helpers.compose import compose_train

ATTACKS = ["pgd_linf", "pgd_l2", "pgd_l1", "fgsm", "mim", "apgd_ce"]
# Which dataset.meta budget each attack config reads, and the norm it is measured in.
NORM = {"pgd_linf": "linf", "pgd_l2": "l2", "pgd_l1": "l1", "fgsm": "linf", "mim": "linf", "apgd_ce": "linf"}
META_EPS = {"linf": "eps", "l2": "eps_l2", "l1": "eps_l1"}
TOL = 1e-5


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def digits_batch():
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    x, y = dm.train_set.tensors
    x, y = x[:32].clone(), y[:32].clone()
    assert x.shape == (32, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    return x, y


def make_model(x: torch.Tensor) -> nn.Module:
    """A fixed, untrained digits ResNet5 whose BatchNorm running statistics are non-trivial."""
    torch.manual_seed(0)
    model = resnet5(1, 10, stem_stride=1)
    model.train()
    with torch.no_grad():
        model(x)  # one training-mode pass moves the running statistics off their init values
    return model


@pytest.fixture(scope="module")
def attack_cfgs(tmp_path_factory):
    out = tmp_path_factory.mktemp("attacks")
    # Full step counts (fast=False) so that the PGD-L-inf effectiveness check has enough steps.
    return {name: compose_train([f"attack={name}"], out, fast=False) for name in ATTACKS}


def per_sample_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    return flat.abs().sum(dim=1)


def model_state(model: nn.Module) -> dict:
    """Everything an attack must leave alone: buffers, grads, train/eval modes, requires_grad flags, weights."""
    return {
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "grads": {k: None if p.grad is None else p.grad.detach().clone() for k, p in model.named_parameters()},
        "modes": {k: m.training for k, m in model.named_modules()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "params": {k: p.detach().clone() for k, p in model.named_parameters()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"], "train/eval mode of some submodule not restored"
    assert before["requires_grad"] == after["requires_grad"], "requires_grad flags not restored"
    assert before["buffers"].keys() == after["buffers"].keys()
    for k, v in before["buffers"].items():
        assert torch.equal(v, after["buffers"][k]), f"buffer {k} changed during the attack"
    for k, g in before["grads"].items():
        g2 = after["grads"][k]
        if g is None:
            assert g2 is None, f"parameter {k} got a .grad during the attack"
        else:
            assert g2 is not None and torch.equal(g, g2), f"pre-existing .grad of {k} changed during the attack"
    for k, p in before["params"].items():
        assert torch.equal(p, after["params"][k]), f"parameter {k} changed during the attack"


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.slow
def test_attack_stays_in_ball_and_box(name, attack_cfgs, digits_batch):
    cfg = attack_cfgs[name]
    attack = instantiate(cfg.attack)
    assert isinstance(attack, AttackFactory)
    norm = NORM[name]
    eps = float(cfg.dataset.meta[META_EPS[norm]])
    assert attack.eps == pytest.approx(eps) and eps > 0
    x, y = digits_batch
    model = make_model(x)
    torch.manual_seed(1)
    x_adv = attack(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    norms = per_sample_norm(x_adv - x, norm)
    assert (norms <= eps + TOL).all(), f"{name}: per-sample {norm} norms up to {norms.max():.6f} > eps={eps}"
    # the attack did something, for (nearly) every sample
    assert (x_adv - x).abs().max() > 1e-3
    assert (norms > 0).float().mean() > 0.9
    if norm == "linf":
        # L-inf attacks use their budget: some coordinate of most samples sits at the ball's surface or a box face
        at_eps = ((x_adv - x).abs().flatten(1) >= eps - 1e-4).any(dim=1)
        assert at_eps.float().mean() > 0.5


@pytest.mark.slow
def test_pgd_linf_raises_loss_of_untrained_model(attack_cfgs, digits_batch):
    cfg = attack_cfgs["pgd_linf"]
    attack = instantiate(cfg.attack)
    assert attack.steps == cfg.dataset.meta.train_attack_steps == 10
    x, y = digits_batch
    model = make_model(x)
    model.eval()
    torch.manual_seed(2)
    x_adv = attack(model, x, y)
    with torch.no_grad():
        loss_clean = F.cross_entropy(model(x), y)
        loss_adv = F.cross_entropy(model(x_adv), y)
    assert loss_adv > loss_clean, (loss_clean.item(), loss_adv.item())


@pytest.fixture(scope="module")
def trained_model():
    """ResNet5 naturally trained for a few hundred steps on digits (about 90% clean accuracy)."""
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    x, y = dm.train_set.tensors
    torch.manual_seed(0)
    model = resnet5(1, 10, stem_stride=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        idx = torch.randint(0, len(y), (64,))
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    return model, dm.test_set.tensors


@pytest.mark.slow
def test_pgd_linf_defeats_trained_model(attack_cfgs, trained_model):
    model, (x, y) = trained_model
    x, y = x[:128], y[:128]
    attack = instantiate(attack_cfgs["pgd_linf"].attack)
    torch.manual_seed(2)
    x_adv = attack(model, x, y)
    with torch.no_grad():
        logits_clean, logits_adv = model(x), model(x_adv)
        torch.manual_seed(3)  # a random sign perturbation of the same size, for comparison
        logits_rand = model((x + attack.eps * torch.randn_like(x).sign()).clamp(0, 1))
    acc = {
        k: (v.argmax(1) == y).float().mean().item()
        for k, v in dict(clean=logits_clean, adv=logits_adv, rand=logits_rand).items()
    }
    loss_clean, loss_adv = F.cross_entropy(logits_clean, y), F.cross_entropy(logits_adv, y)
    assert acc["clean"] > 0.7, acc
    assert acc["adv"] < acc["clean"] - 0.3, acc
    assert acc["adv"] < acc["rand"], acc
    assert loss_adv > loss_clean + 1.0


# --------------------------------------------------------------------------- APGD-CE (the official code's attack)
def apgd(attack_cfgs, **overrides):
    cfg = attack_cfgs["apgd_ce"].attack.copy()
    cfg.update(overrides)
    return instantiation.instantiate(cfg)  # Hydra's wrapper unwrapped: ConfigError comes through as such


def test_apgd_ce_config_is_the_official_attack(attack_cfgs):
    attack = apgd(attack_cfgs)
    cfg = attack_cfgs["apgd_ce"]
    built = attack.build(lambda x: x)
    assert type(built).__name__ == "APGDCE" and type(built.apgd).__name__ == "APGDAttack"
    assert built.apgd.loss == "ce" and built.apgd.norm == "Linf" and built.apgd.n_restarts == 1
    assert built.nb_iter == attack.steps == cfg.dataset.meta.train_attack_steps
    assert built.eps == pytest.approx(cfg.dataset.meta.eps) and attack.step_size is None
    assert built.failed_samples == "perturbed"


@pytest.mark.parametrize("failed_samples", ["clean", "perturbed"])
@pytest.mark.slow
def test_apgd_ce_defeats_trained_model_and_failed_samples_option(attack_cfgs, trained_model, failed_samples):
    model, (x, y) = trained_model
    x, y = x[:128], y[:128]
    attack = apgd(attack_cfgs, failed_samples=failed_samples)
    before = model_state(model)
    torch.manual_seed(2)
    x_adv = attack(model, x, y)
    assert_same_state(before, model_state(model))
    assert per_sample_norm(x_adv - x, "linf").max() <= attack.eps + TOL and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        right_clean = model(x).argmax(1) == y
        right_adv = model(x_adv).argmax(1) == y
    assert right_clean.float().mean() > 0.7
    assert right_adv.float().mean() < right_clean.float().mean() - 0.3
    unchanged = (x_adv == x).flatten(1).all(dim=1)
    if failed_samples == "clean":
        # the official behaviour: every sample not fooled, or misclassified to begin with, comes back clean
        assert unchanged[right_adv].all() and unchanged[~right_clean].all()
        assert not unchanged[right_clean & ~right_adv].any()
    else:  # every sample comes back perturbed (the highest-loss point found)
        assert not unchanged.any()


def test_apgd_ce_leaves_the_run_random_stream_alone(attack_cfgs, digits_batch):
    """APGD seeds torch's global generator itself; here it must only draw one number from it."""
    x, y = digits_batch
    model = make_model(x)
    for failed_samples in ("clean", "perturbed"):
        attack = apgd(attack_cfgs, failed_samples=failed_samples)
        torch.manual_seed(3)
        x1 = attack(model, x, y)
        after_attack = torch.rand(5)
        torch.manual_seed(3)
        torch.randint(0, 2**31 - 1, ())
        assert torch.equal(after_attack, torch.rand(5))
        # a different seed of the run gives a different random start
        torch.manual_seed(4)
        x2 = attack(model, x, y)
        if failed_samples == "perturbed":
            assert not torch.equal(x1, x2)


def test_apgd_ce_refuses_what_it_cannot_do(attack_cfgs, tmp_path, digits_batch):
    with pytest.raises(ConfigError, match="failed_samples"):
        apgd(attack_cfgs, failed_samples="best")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        apgd(attack_cfgs, clip_max=255.0)
    # TRADES' KL attack needs a custom loss: a clear error, not a silent cross-entropy attack
    cfg = compose_train(["method=trades", "attack=apgd_ce"], tmp_path)
    x, y = digits_batch
    method = instantiate(cfg.method, model=make_model(x), attack=instantiate(cfg.attack), eval_attack=None)
    with pytest.raises(ConfigError, match="custom loss"):
        method.trades_adversarial(x)


# --------------------------------------------------------------------------- side effects
def _prepare(model: nn.Module, mode: str) -> None:
    """Put ``model`` into ``mode``, give some parameters a grad, and freeze one parameter."""
    if mode == "train":
        model.train()
    elif mode == "eval":
        model.eval()
    else:  # mixed: training, but one BatchNorm and the classifier in eval mode
        model.train()
        model.encoder[1][1].eval()  # the stem's BatchNorm2d
        model.classifier.eval()
    torch.manual_seed(5)
    model.classifier.weight.grad = torch.randn_like(model.classifier.weight)
    model.encoder[1][0].weight.grad = torch.randn_like(model.encoder[1][0].weight)
    model.encoder[1][3].bn1.weight.requires_grad_(False)  # frozen before the attack, must stay frozen


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("name", ATTACKS)
def test_attack_has_no_side_effects(name, mode, attack_cfgs, digits_batch):
    attack = instantiate(attack_cfgs[name].attack)
    x, y = digits_batch
    model = make_model(x)
    _prepare(model, mode)
    assert isinstance(model.encoder[1][1], nn.BatchNorm2d)
    if mode == "mixed":
        assert model.training and not model.encoder[1][1].training and not model.classifier.training
        assert model.encoder[1][3].bn1.training
    before = model_state(model)
    assert before["grads"]["classifier.bias"] is None  # some grads start as None
    assert before["requires_grad"]["encoder.1.3.bn1.weight"] is False
    assert before["buffers"]["encoder.1.1.num_batches_tracked"] == 1
    x_adv = attack(model, x, y)
    assert not torch.equal(x_adv, x)
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("name", ["pgd_linf", "fgsm", "pgd_l2", "apgd_ce"])
def test_attack_works_under_no_grad(name, attack_cfgs, digits_batch):
    """Validation runs under no_grad / with grads off; the attack must still produce the same examples."""
    attack = instantiate(attack_cfgs[name].attack)
    x, y = digits_batch
    model = make_model(x)
    model.eval()
    before = model_state(model)
    torch.manual_seed(7)
    x_ref = attack(model, x, y)
    torch.manual_seed(7)
    with torch.no_grad():
        assert not torch.is_grad_enabled()
        x_adv = attack(model, x, y)
        assert not torch.is_grad_enabled()  # grad mode restored after the attack
    assert not torch.equal(x_adv, x)
    assert torch.equal(x_adv, x_ref)
    assert_same_state(before, model_state(model))


def test_trades_kl_attack_stays_in_linf_ball(tmp_path, digits_batch):
    cfg = compose_train(["method=trades"], tmp_path, fast=False)
    x, y = digits_batch
    model = make_model(x)
    method = instantiate(cfg.method, model=model, attack=instantiate(cfg.attack), eval_attack=None)
    model.train()
    before = model_state(model)
    torch.manual_seed(0)
    x_adv = method.trades_adversarial(x)
    eps = float(cfg.dataset.meta.eps)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert per_sample_norm(x_adv - x, "linf").max() <= eps + TOL
    # the KL attack moved well beyond its 0.001-scale random start
    assert (x_adv - x).abs().max() > 0.01
    assert_same_state(before, model_state(model))


# --------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(eps=-0.1, steps=10, step_size=0.01), r"\beps\b"),
        (dict(eps=0.1, steps=0, step_size=0.01), r"\bsteps\b"),
        (dict(eps=0.1, steps=10, step_size=0.0), r"\bstep_size\b"),
    ],
)
def test_bad_attack_config_raises(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        AttackFactory(attack_cls="advertorch.attacks.LinfPGDAttack", **kwargs)


def test_good_attack_config_accepted():
    attack = AttackFactory(attack_cls="advertorch.attacks.LinfPGDAttack", eps=0.1, steps=10, step_size=0.01)
    assert (attack.eps, attack.steps, attack.step_size) == (0.1, 10, 0.01)


def test_negative_eps_in_train_config_fails_in_build(tmp_path):
    cfg = compose_train(["attack.eps=-1"], tmp_path)
    with pytest.raises(ConfigError, match=r"\beps\b"):
        build(cfg)
    assert not (tmp_path / "checkpoints").exists()

"""Survivors-only sweeps and minimum-norm curves give the numbers the slow, direct ways give."""

from __future__ import annotations

import pytest
import torch

import afd_lightning
from afd_lightning.attacks import attack_mode
from afd_lightning.data import DigitsDataModule
from afd_lightning.evaluation.attacks import FoolboxMinNorm, NormBallAttack
from afd_lightning.evaluation.sweep import predict, run_curve


@pytest.fixture(scope="module")
def model_and_data(nt_ckpt):  # noqa: F811
    dm = DigitsDataModule()
    dm.setup("test")
    x, y = dm.test_set.tensors
    model = afd_lightning.load_classifier(nt_ckpt)
    return model, x[:80], y[:80]


def _curve(model, attack, x, y, mode):
    with attack_mode(model):
        correct = predict(model, x, 500) == y
        return run_curve(model, attack, x, y, correct, mode=mode, batch_size=32, seed=0), correct


@pytest.mark.parametrize(
    "attack",
    [
        NormBallAttack("fgsm", "linf", [0, 0.05, 0.1, 0.2, 0.4], "advertorch.attacks.GradientSignAttack"),
        NormBallAttack(
            "pgd",
            "linf",
            [0, 0.05, 0.1, 0.2],
            "advertorch.attacks.LinfPGDAttack",
            steps=5,
            rel_step_size=0.4,
            rand_init=False,
        ),
    ],
    ids=["fgsm", "pgd_no_rand_init"],
)
@pytest.mark.slow
def test_survivors_equals_running_min_of_independent(model_and_data, attack):
    model, x, y = model_and_data
    fast, correct = _curve(model, attack, x, y, "survivors")
    slow, _ = _curve(model, attack, x, y, "independent")
    # Robust at eps under survivors == robust at every eps' <= eps when each eps is attacked afresh.
    running = torch.cummin(slow.robust.int(), dim=0).values.bool()
    assert torch.equal(fast.robust, running)
    assert fast.accuracy == [float(r.float().mean()) for r in running]
    # Misclassified clean samples are never attacked; later eps only attack survivors.
    assert fast.attacked[1] == int(correct.sum())
    assert all(a <= b for a, b in zip(fast.attacked[2:], fast.attacked[1:]))
    assert sum(fast.attacked) < sum(slow.attacked)
    assert fast.accuracy[0] == pytest.approx(float(correct.float().mean()))


@pytest.mark.slow
def test_min_norm_curve_equals_direct_per_eps_evaluation(model_and_data):
    import foolbox as fb

    model, x, y = model_and_data
    eps = [0.0, 0.1, 0.3, 0.6, 1.0, 2.0]
    attack = FoolboxMinNorm("deepfool_l2", "l2", eps, "foolbox.attacks.L2DeepFoolAttack", steps=50)
    curve, correct = _curve(model, attack, x, y, "survivors")
    assert curve.attacked == [int(correct.sum())] + [0] * (len(eps) - 1)  # one run for the whole curve
    # Direct: foolbox's own per-eps evaluation (perturbation clipped to each eps, success re-checked).
    with attack_mode(model), torch.enable_grad():
        fmodel = fb.PyTorchModel(model, bounds=(0, 1))
        _, _, success = fb.attacks.L2DeepFoolAttack(steps=50)(fmodel, x, y, epsilons=eps[1:])
    direct = [float(correct.float().mean())] + [float((correct & ~s).float().mean()) for s in success]
    for a, b in zip(curve.accuracy, direct):
        assert a == pytest.approx(b, abs=0.04)
    # and the naive way (rerun per eps) gives the same numbers for this deterministic attack
    naive, _ = _curve(model, attack, x, y, "independent")
    assert naive.accuracy == pytest.approx(curve.accuracy, abs=1e-9)
    assert sum(naive.attacked) == int(correct.sum()) * (len(eps) - 1)

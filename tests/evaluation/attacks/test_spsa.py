"""SPSA (evaluation/attacks/spsa.py) is advertorch's LinfSPSAAttack made cheaper, never weaker; the attack base's options."""

from __future__ import annotations

import pytest
import torch

from afd_lightning.attacks.factory import import_attack_class
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks import SPSA, EvalAttack, NormBallAttack
from afd_lightning.evaluation.sweep import predict, run_curve

BUDGET = dict(steps=6, delta=0.01, lr=0.02, nb_sample=16)


def _tiny():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(6 * 64, 10)
    ).eval()
    x = torch.rand(40, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample clean-correct
    return model, x, y


@pytest.mark.parametrize("max_batch_size", [4096, 5])
@pytest.mark.slow
def test_without_early_stop_it_is_advertorchs_spsa_bit_for_bit(max_batch_size):
    model, x, y = _tiny()
    advertorch_spsa = import_attack_class("advertorch.attacks.LinfSPSAAttack")
    torch.manual_seed(1)
    expected = advertorch_spsa(
        model,
        eps=0.1,
        delta=BUDGET["delta"],
        lr=BUDGET["lr"],
        nb_iter=BUDGET["steps"],
        nb_sample=BUDGET["nb_sample"],
        max_batch_size=max_batch_size,
    ).perturb(x, y)
    torch.manual_seed(1)
    got = SPSA("spsa", "linf", [0, 0.1], max_batch_size=max_batch_size, early_stop=False, **BUDGET).perturb(
        model, x, y, 0.1
    )
    assert torch.equal(got, expected)


@pytest.mark.slow
def test_early_stop_leaves_the_same_or_lower_accuracy_on_the_same_samples_and_seed():
    model, x, y = _tiny()
    correct = torch.ones(len(y), dtype=torch.bool)
    old = NormBallAttack(  # conf/eval/attack/spsa.yaml before: advertorch's SPSA
        "spsa",
        "linf",
        [0, 0.05, 0.1],
        "advertorch.attacks.LinfSPSAAttack",
        steps=BUDGET["steps"],
        delta=BUDGET["delta"],
        lr=BUDGET["lr"],
        nb_sample=BUDGET["nb_sample"],
        max_batch_size=4096,
    )
    new = SPSA("spsa", "linf", [0, 0.05, 0.1], max_batch_size=4096, **BUDGET)
    old_curve = run_curve(model, old, x, y, correct, seed=3)
    new_curve = run_curve(model, new, x, y, correct, seed=3)
    # per sample: robust under the new attack only where robust under the old one
    assert not (new_curve.robust & ~old_curve.robust).any()
    assert all(n <= o for n, o in zip(new_curve.accuracy, old_curve.accuracy))
    assert 0 < new_curve.accuracy[-1] < 1  # the tiny case is neither trivial nor hopeless
    # inside the eps-ball and [0, 1]
    torch.manual_seed(0)
    x_adv = new.perturb(model, x, y, 0.05)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (predict(model, x_adv, 100) != y).any()


def test_eps_zero_is_the_clean_images_and_draws_no_random_numbers():
    model, x, y = _tiny()
    attack = SPSA("spsa", "linf", [0, 0.1], **BUDGET)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert torch.equal(attack.perturb(model, x, y, 0.0), x)
    assert torch.equal(torch.get_rng_state(), state)


def test_common_options_are_keyword_only_and_checked():
    with pytest.raises(TypeError):
        EvalAttack("a", "linf", [0, 0.1], "label-as-4th-positional")  # type: ignore[misc]
    with pytest.raises(ConfigError, match="restarts"):
        SPSA("spsa", "linf", [0, 0.1], restarts=0)
    with pytest.raises(ConfigError, match="L∞"):
        SPSA("spsa", "l2", [0, 0.1])
    options, rest = EvalAttack.split_options({"label": "L", "restarts": 2, "decay_factor": 1.0})
    assert options == {"label": "L", "restarts": 2} and rest == {"decay_factor": 1.0}

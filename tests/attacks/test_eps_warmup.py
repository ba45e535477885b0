"""ε warm-up (``attack.warmup_epochs``): eps rises linearly over the first N training epochs, as a
function of the epoch only, so an exact resume continues the ramp where it stopped."""

from __future__ import annotations

import csv

import pytest
import torch

from afd_lightning.attacks import AttackFactory
from afd_lightning.errors import ConfigError
from afd_lightning.train import run

from helpers.compose import compose_train

PGD = "advertorch.attacks.LinfPGDAttack"


def test_eps_and_step_size_ramp_with_the_epoch():
    attack = AttackFactory(PGD, eps=0.3, steps=5, step_size=0.075, warmup_epochs=3)
    assert attack.eps_at(0) == pytest.approx(0.1)  # first epoch: a third of eps
    assert attack.eps_at(1) == pytest.approx(0.2)  # mid-ramp
    assert attack.eps_at(2) == pytest.approx(0.3) and attack.eps_at(10) == pytest.approx(0.3)  # after
    assert attack.eps_at(None) == 0.3  # evaluation: the full budget
    assert AttackFactory(PGD, eps=0.3, steps=5, step_size=0.075).eps_at(0) == 0.3  # no warm-up by default
    built = attack.build(torch.nn.Identity(), scale=attack.eps_scale(0))
    assert built.eps == pytest.approx(0.1) and built.eps_iter == pytest.approx(0.025)  # step stays eps / 4

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    for epoch, eps in ((0, 0.1), (1, 0.2), (5, 0.3)):
        moved = (attack(model, x, y, epoch=epoch) - x).abs().amax()
        assert moved <= eps + 1e-6 and moved > eps - 1e-3  # PGD uses the epoch's whole budget, no more


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_warmup_epochs_must_be_a_count(bad):
    with pytest.raises(ConfigError, match="warmup_epochs"):
        AttackFactory(PGD, eps=0.3, steps=5, step_size=0.075, warmup_epochs=bad)


def _logged_eps(run_dir):
    with open(run_dir / "csv" / "metrics.csv") as f:
        return {int(r["epoch"]): float(r["train/attack_eps"]) for r in csv.DictReader(f) if r.get("train/attack_eps")}


@pytest.mark.slow
def test_training_ramps_eps_and_a_resume_continues_the_ramp(tmp_path):
    short = ["method=at", "attack.warmup_epochs=3", "+trainer.limit_train_batches=2", "test_after_fit=false"]
    first, second = tmp_path / "first", tmp_path / "second"
    run(compose_train([*short, "trainer.max_epochs=2"], first))
    assert _logged_eps(first) == pytest.approx({0: 0.2 / 3, 1: 0.4 / 3})  # digits eps 0.2
    last = first / "checkpoints" / "last.ckpt"
    run(compose_train([*short, "trainer.max_epochs=4", f"ckpt_path={last}"], second))
    assert _logged_eps(second) == pytest.approx({2: 0.2, 3: 0.2})


@pytest.mark.slow
def test_paper_mnist10k_at_trains_from_scratch_with_the_warmup():
    """One command, no hand-made first stage: eps 0.1, 0.2, then the paper's 0.3 (PGD-40, step 0.01 at 0.3)."""
    from afd_lightning.run.instantiation import instantiate

    cfg = compose_train(["experiment=paper_mnist10k_at"], fast=False)
    attack = instantiate(cfg.attack)
    assert attack.warmup_epochs == 3 and attack.eps == pytest.approx(0.3)
    assert [round(attack.eps_at(e), 6) for e in range(4)] == [0.1, 0.2, 0.3, 0.3]
    full_mnist = compose_train(["experiment=paper_mnist_at"], fast=False).attack
    assert full_mnist.warmup_epochs == 0  # the full-MNIST preset keeps the paper's recipe unchanged

"""The honesty checks: quiet on an honest (natural) model, loud on a model with masked gradients."""

from __future__ import annotations

import pytest
import torch

import afd_lightning
from afd_lightning.data import DigitsDataModule
from afd_lightning.evaluation.attacks import FoolboxMinNorm, NormBallAttack
from afd_lightning.evaluation.checks.paired import unbounded_eps
from afd_lightning.evaluation.stats import paired_counts, paired_gap_significant, wilson_interval
from afd_lightning.evaluation.suite import SuiteSettings, evaluate_models

from helpers.evaluation import MaskedGradients


def small_suite():
    pgd = dict(attack_cls="advertorch.attacks.LinfPGDAttack", steps=10, rel_step_size=0.25, rand_init=True)
    return [
        NormBallAttack("pgd_linf", "linf", [0, 0.1, 0.2, 0.5], **pgd),
        NormBallAttack("fgsm", "linf", [0, 0.1, 0.2, 0.5], "advertorch.attacks.GradientSignAttack"),
        NormBallAttack("pgd_linf_strong", "linf", [0, 0.2], **{**pgd, "steps": 20}, restarts=2, auc_table=False),
        NormBallAttack(
            "spsa",
            "linf",
            [0, 0.2],
            "advertorch.attacks.LinfSPSAAttack",
            steps=10,
            gradient_free=True,
            auc_table=False,
            delta=0.01,
            lr=0.05,
            nb_sample=32,
            max_batch_size=2048,
        ),
        FoolboxMinNorm("deepfool", "linf", [0, 0.1, 0.2, 0.5], "foolbox.attacks.LinfDeepFoolAttack", steps=20),
    ]


@pytest.fixture(scope="module")
def data():
    dm = DigitsDataModule()
    dm.setup("test")
    x, y = dm.test_set.tensors
    return x[:60], y[:60]


def _failed(result):
    return {c.name for c in result.checks if c.passed is False}


@pytest.mark.slow
def test_natural_model_breaks_at_large_eps_and_passes_every_check(nt_ckpt, nt2_ckpt, data):  # noqa: F811
    x, y = data
    model, source = afd_lightning.load_classifier(nt_ckpt), afd_lightning.load_classifier(nt2_ckpt)
    res = evaluate_models(
        {"NT": model},
        x,
        y,
        small_suite(),
        SuiteSettings(table_eps=0.2, transfer=("pgd_linf", "fgsm"), natural=("NT",)),
        source=source,
    )["NT"]
    assert res.clean_accuracy > 0.8
    assert res.curves["pgd_linf"].accuracy[-1] <= 0.05  # eps 0.5 L∞ breaks a natural model
    assert res.curves["deepfool"].accuracy[-1] <= 0.05
    assert _failed(res) == set(), [c for c in res.checks if c.passed is False]
    ran = {c.name for c in res.checks if c.passed is True}
    assert {
        "large_eps_near_zero",
        "iterative_beats_single_step",
        "white_box_beats_black_box",
        "gradient_free_not_stronger",
        "more_steps_not_higher",
        "pgd_linf_not_beaten",
        "attack_self_test",
        "worst_case_near_pgd",
        "no_saturation",
    } <= ran
    # survivors curves cannot rise: that check says n/a rather than a "pass" it could never fail
    assert next(c for c in res.checks if c.name == "monotone_in_eps").passed is None
    assert res.worst_case.accuracy <= res.curves["pgd_linf"].accuracy_at(0.2)


@pytest.mark.slow
def test_masked_gradients_fail_the_checks(nt_ckpt, data):  # noqa: F811
    x, y = data
    masked = MaskedGradients(afd_lightning.load_classifier(nt_ckpt))
    res = evaluate_models({"masked": masked}, x, y, small_suite(), SuiteSettings(table_eps=0.2))["masked"]
    # The gradient attacks see a flat loss and report robustness the model does not have...
    assert res.curves["fgsm"].accuracy[-1] == pytest.approx(res.clean_accuracy)
    # ...which the gradient-free attack and the erase-any-image eps expose.
    failed = _failed(res)
    assert "gradient_free_not_stronger" in failed
    assert "large_eps_near_zero" in failed
    detail = next(c for c in res.checks if c.name == "gradient_free_not_stronger")
    assert detail.numbers and "spsa" in detail.details
    # zero input gradients everywhere: the saturation check sees them
    assert "no_saturation" in failed


def test_paired_statistics_and_erase_budget():
    # the audit's numbers: AutoAttack broke 22 samples PGD left (none the other way) at n = 200
    assert paired_gap_significant(22, 0, 200)
    assert not paired_gap_significant(3, 1, 200)  # noise
    assert not paired_gap_significant(0, 22, 200)  # the other direction is not this check's failure
    a = torch.tensor([True, True, False, True])
    b = torch.tensor([True, False, False, False])
    assert paired_counts(a, b) == (2, 0)
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0.0, 50)[0] == 0.0 and wilson_interval(0.0, 50)[1] > 0
    assert unbounded_eps("l2", 64) == 4.0 and unbounded_eps("l1", 64) == 32.0 and unbounded_eps("linf", 3) == 0.5

"""Normalised AUC (Table 2) against hand-computed curves."""

import math

import pytest

from afd_lightning.evaluation.analysis.auc import normalized_auc


def test_hand_computed_curve():
    # trapezoids: (1 + 0.5)/2 * 1 + (0.5 + 0)/2 * 1 = 1.0, over a range of 2
    assert normalized_auc([0, 1, 2], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    # uneven spacing: 0.1 * (0.9 + 0.7)/2 + 0.2 * (0.7 + 0.1)/2 = 0.08 + 0.08 = 0.16, / 0.3
    assert normalized_auc([0, 0.1, 0.3], [0.9, 0.7, 0.1]) == pytest.approx(0.16 / 0.3)


def test_perfectly_robust_scores_one_and_broken_scores_zero():
    assert normalized_auc([0, 2, 5, 10, 20], [1.0] * 5) == pytest.approx(1.0)
    assert normalized_auc([0, 2, 5], [0.0] * 3) == 0.0


def test_rejects_unsorted_or_short_eps():
    with pytest.raises(ValueError):
        normalized_auc([0, 2, 1], [1, 1, 1])
    with pytest.raises(ValueError):
        normalized_auc([0], [1])
    assert math.isfinite(normalized_auc([0.5, 1.0], [0.3, 0.2]))

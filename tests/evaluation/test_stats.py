"""The statistics module on scipy: textbook values, and the honesty checks' old answers unchanged.

Textbook values:
* Welch: R's ``t.test(extra ~ group, data = sleep)`` (Student's sleep data, 1908): t = -1.8608,
  df = 17.776, p = 0.07939, difference of means -1.58.
* Wilson: Newcombe (1998), Stat. Med. 17:857, Table I, method 3: 81/263 -> 0.2553-0.3662,
  15/148 -> 0.0624-0.1605, 0/20 -> 0-0.1611, 1/29 -> 0.0061-0.1718.
* Exact McNemar: Fagerland, Lydersen & Laake (2013), BMC Med. Res. Methodol. 13:91, the airway
  hyper-responsiveness example (21 pairs, discordant 1 and 7): exact conditional p = 0.0703 = 2 * 9 / 256.
* Binomial tail: P(X >= 9) for X ~ Binomial(10, 1/2) = (10 + 1) / 1024.
* Holm: the four p-values (0.01, 0.04, 0.03, 0.005) at alpha 0.05 reject the first and the last
  (0.005 <= 0.05/4, 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops).

"Before" values: computed with the hand-written module this one replaced (same inputs, 1e-9).
"""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from afd_lightning.evaluation import stats

SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_matches_r_on_the_sleep_data():
    w = stats.welch_test(SLEEP_1, SLEEP_2)
    assert w.difference == pytest.approx(-1.58)
    assert w.t == pytest.approx(-1.8608, abs=1e-4)
    assert w.df == pytest.approx(17.776, abs=1e-3)
    assert w.p == pytest.approx(0.07939, abs=1e-5)
    assert (w.n_a, w.n_b, w.test) == (10, 10, "welch_t")
    # symmetric in the groups
    assert stats.welch_test(SLEEP_2, SLEEP_1).t == pytest.approx(-w.t)


def test_welch_degrees_of_freedom_before_scipy_reported_them(monkeypatch):
    """scipy < 1.11's ttest_ind gave no ``df``: Welch-Satterthwaite's formula gives R's 17.776 all the same."""
    real = stats._scipy_stats().ttest_ind

    def without_df(*args, **kwargs):
        res = real(*args, **kwargs)
        return SimpleNamespace(statistic=res.statistic, pvalue=res.pvalue)

    monkeypatch.setattr(stats._scipy_stats(), "ttest_ind", without_df)
    assert stats.welch_test(SLEEP_1, SLEEP_2).df == pytest.approx(17.776, abs=1e-3)


def test_welch_is_undefined_without_spread_or_with_one_run():
    one = stats.welch_test([60.0], [64.0, 65.0])
    assert one.difference == pytest.approx(-4.5) and one.t is None and one.p is None and one.n_a == 1
    flat = stats.welch_test([60.0, 60.0], [64.0, 64.0])
    assert flat.difference == -4.0 and flat.p is None
    with pytest.raises(ValueError, match="at least one value"):
        stats.welch_test([], [1.0])


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe(k, n, low, high):
    lo, hi = stats.wilson_interval(k / n, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_gives_the_old_answers():
    before = {
        (0.5, 100, stats.Z95): (0.40383152963549296, 0.596168470364507),
        (0.0, 50, stats.Z95): (0.0, 0.07134760017861413),
        (1.0, 50, stats.Z95): (0.9286523998213857, 0.9999999999999999),
        (0.605, 200, stats.Z95): (0.5358834910421801, 0.6701589903573375),
        (0.2, 5, stats.Z95): (0.03622410822563066, 0.6244653729700049),
        (0.3, 40, 1.0): (0.23314418941535253, 0.3766119081456232),  # another z: its own confidence level
        (0.7, 200, 2.575829): (0.6112119745631093, 0.7759443185962909),
    }
    for (p, n, z), (low, high) in before.items():
        lo, hi = stats.wilson_interval(p, n, z)
        assert lo == pytest.approx(low, abs=1e-9) and hi == pytest.approx(high, abs=1e-9)
    # float32 accuracies are counts over n, not exact fractions
    assert stats.wilson_interval(float(torch.tensor(231 / 360, dtype=torch.float32)), 360) == pytest.approx(
        stats.wilson_interval(231 / 360, 360), abs=1e-12
    )
    assert stats.wilson_interval(0.5, 0) == (0.0, 1.0) and stats.wilson_interval(math.nan, 10) == (0.0, 1.0)


def test_binomial_tail_exact_and_as_before():
    assert stats.binomial_tail(9, 10, 0.5) == pytest.approx(11 / 1024, rel=1e-12)
    before = {
        (3, 10, 0.05): 0.011503557379296859,
        (12, 141, 0.05): 0.05098200777565164,
        (20, 200, 0.1): 0.5344615291740824,
        (50, 360, 0.1): 0.011315478469722504,
    }
    for (k, n, p), value in before.items():
        assert stats.binomial_tail(k, n, p) == pytest.approx(value, rel=1e-9)
    assert stats.binomial_tail(0, 5, 0.1) == 1.0 and stats.binomial_tail(5, 4, 0.3) == 0.0
    assert stats.binomial_tail(3, 10, 0.0) == 0.0 and stats.binomial_tail(3, 10, 1.0) == 1.0


def test_one_sided_p_is_the_normal_tail():
    assert stats.one_sided_p(0.0) == 0.5
    assert stats.one_sided_p(2.0) == pytest.approx(0.02275013194817922, rel=1e-12)
    assert stats.one_sided_p(stats.Z95) == pytest.approx(0.025, abs=1e-9)
    assert stats.one_sided_p(8.0) == pytest.approx(6.220960574271819e-16, rel=1e-9)  # no cancellation in the tail
    assert stats.confidence_of(stats.Z95) == pytest.approx(0.95, abs=1e-8)  # Z95 is 1.959964, rounded


def test_holm_textbook_example():
    assert stats.holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert stats.holm([0.04], 0.05) == [True] and stats.holm([], 0.05) == []
    # all below alpha / m: all rejected; the smallest above alpha / m: none
    assert stats.holm([0.001, 0.002, 0.003], 0.05) == [True] * 3
    assert stats.holm([0.02, 0.03, 0.04], 0.05) == [False] * 3


def test_significant_gaps_give_the_old_verdicts():
    # (counts, z, min_gap) -> (holm, none), from the hand-written module
    before = [
        ([(8, 1, 40), (24, 7, 360), (20, 6, 360), (3, 7, 100), (12, 6, 40)], 2.5, 0.0),
        ([(4, 8, 100), (24, 5, 40), (5, 4, 100), (17, 2, 360), (22, 10, 40)], 2.0, 0.01),
        ([(12, 5, 100), (3, 10, 100), (8, 0, 200)], 2.5, 0.01),
        ([(25, 10, 200), (19, 4, 100), (2, 10, 360), (18, 6, 360)], 2.5, 0.01),
    ]
    verdicts = [
        ([False, True, False, False, False], [False, True, True, False, False]),
        ([False, True, False, True, False], [False, True, False, True, True]),
        ([False, False, False], [False, False, True]),
        ([False, True, False, False], [True, True, False, False]),
    ]
    for (counts, z, min_gap), (holm, none) in zip(before, verdicts):
        assert stats.significant_gaps(counts, z, min_gap, "holm") == holm
        assert stats.significant_gaps(counts, z, min_gap, "none") == none
    assert stats.paired_gap_significant(22, 0, 200) and not stats.paired_gap_significant(3, 1, 200)
    assert stats.paired_counts(torch.tensor([1, 1, 0, 1]), torch.tensor([0, 1, 1, 0])) == (2, 1)


def test_exact_mcnemar_matches_fagerland():
    m = stats.mcnemar_exact(1, 7, 21)
    assert m.p == pytest.approx(0.0703125, rel=1e-12) and m.p == pytest.approx(2 * 9 / 256)
    assert (m.only_a, m.only_b, m.pairs, m.test) == (1, 7, 21, "mcnemar_exact")
    assert stats.mcnemar_exact(7, 1, 21).p == pytest.approx(m.p)  # two-sided
    assert stats.mcnemar_exact(5, 5, 100).p == 1.0 and stats.mcnemar_exact(0, 0, 50).p == 1.0
    assert stats.mcnemar_exact(0, 10, 10).p == pytest.approx(2 / 1024)  # 10 of 10 one way
    with pytest.raises(ValueError, match="do not fit"):
        stats.mcnemar_exact(6, 6, 10)


def test_bootstrap_interval_is_seeded_and_agrees_with_theory_on_large_samples():
    ci = stats.bootstrap_difference_ci(SLEEP_1, SLEEP_2)
    assert ci is not None and ci == stats.bootstrap_difference_ci(SLEEP_1, SLEEP_2)  # same input, same interval
    assert ci.low < -1.58 < ci.high and (ci.method, ci.resamples, ci.seed, ci.confidence) == ("BCa", 9999, 0, 0.95)
    assert stats.bootstrap_difference_ci(SLEEP_1, SLEEP_2, seed=1) != ci  # the seed is what fixes it
    # with 400 values a group, the bootstrap interval is the normal one: difference ± 1.96 standard errors
    rng = np.random.default_rng(7)
    a, b = rng.normal(60, 3, 400), rng.normal(64, 5, 400)
    big = stats.bootstrap_difference_ci(list(a), list(b))
    se = math.sqrt(a.var(ddof=1) / 400 + b.var(ddof=1) / 400)
    centre = a.mean() - b.mean()
    assert big is not None
    assert big.low == pytest.approx(centre - stats.Z95 * se, abs=0.1 * se)
    assert big.high == pytest.approx(centre + stats.Z95 * se, abs=0.1 * se)


def test_bootstrap_needs_two_runs_a_group_and_handles_no_spread():
    assert stats.bootstrap_difference_ci([1.0], [2.0, 3.0]) is None
    flat = stats.bootstrap_difference_ci([60.0, 60.0], [64.0, 64.0])
    assert flat is not None and (flat.low, flat.high, flat.method) == (-4.0, -4.0, "none")
    one_flat = stats.bootstrap_difference_ci([60.0, 60.0, 60.0], [64.0, 65.0, 66.0])
    assert one_flat is not None and one_flat.low <= -5.0 <= one_flat.high


def test_paired_t_matches_the_closed_form_and_r_on_the_sleep_data():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641 on 2 df; the t(2) tail has the closed form
    # P(T > t) = 1/2 - t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2) = 0.07418
    res = stats.paired_t_test([3, 4, 5], [2, 2, 2])
    t = 2 * math.sqrt(3)
    assert (res.difference, res.n, res.df) == (2.0, 3, 2.0)
    assert res.t == pytest.approx(t) and res.p == pytest.approx(1 - t / math.sqrt(2 + t * t))
    # R: t.test(extra[group == 1], extra[group == 2], paired = TRUE) on the sleep data: t = -4.0621, df = 9,
    # p-value = 0.002833
    res = stats.paired_t_test(SLEEP_1, SLEEP_2)
    assert res.t == pytest.approx(-4.0621, abs=1e-4) and res.p == pytest.approx(0.002833, abs=1e-6)
    assert stats.paired_t_test([1, 2], [0, 1]).p is None  # the same difference in every pair: undefined
    with pytest.raises(ValueError, match="needs pairs"):
        stats.paired_t_test([1, 2], [1])


def test_bootstrap_mean_interval_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(1)
    d = rng.normal(5.0, 1.0, size=400)
    ci = stats.bootstrap_mean_ci(d)
    assert ci == stats.bootstrap_mean_ci(d)  # seeded: the same interval every call
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert ci.low == pytest.approx(d.mean() - half, abs=0.02) and ci.high == pytest.approx(d.mean() + half, abs=0.02)
    assert stats.bootstrap_mean_ci([3.0]) is None
    assert (stats.bootstrap_mean_ci([2.0, 2.0, 2.0]).low, stats.bootstrap_mean_ci([2.0, 2.0]).method) == (2.0, "none")


@pytest.mark.slow
def test_an_evaluation_worker_does_not_import_scipy_stats():
    """Every evaluation worker imports the sweep (for its curves); scipy.stats (about 1.3 s) waits for a test."""
    code = "import sys, afd_lightning.evaluation.sweep, afd_lightning.evaluation.parallel; print('scipy.stats' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]

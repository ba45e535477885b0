"""The statistics of our comparisons, in one module, on :mod:`scipy.stats`: intervals, paired and unpaired tests.

Two settings, two kinds of test:

* **Within one evaluation** every attack runs on the *same* samples, so two attacks (or one attack at two ε)
  are compared sample by sample (McNemar's setting): what matters is how many samples one broke that the
  other left standing, not the difference of two accuracies treated as independent draws. The honesty checks
  use :func:`paired_counts`, :func:`paired_gap_significant` and, for a family of such comparisons,
  :func:`significant_gaps` (Holm's correction, :func:`holm`).
* **Across training runs** (``afd-summarize --compare``) two recipes are compared over their seeds: the
  difference of the mean accuracies with a bootstrap 95% interval (:func:`bootstrap_difference_ci`) and
  Welch's t test (:func:`welch_test`, no equal-variance assumption: AT and AFD need not spread alike). Where the
  same test images were attacked, :func:`mcnemar_exact` adds the paired per-image test, pooled over seeds.
* **Two attacks on the same runs** (a claim that one attack is stronger than another across seeds): the
  paired t test over runs (:func:`paired_t_test`) with a bootstrap interval of the mean paired difference
  (:func:`bootstrap_mean_ci`), and McNemar on the images where both attacks kept per-sample records.

Tails and intervals come from scipy (``norm.sf``, ``binom.sf``, ``binomtest`` and its Wilson interval,
``ttest_ind``, ``ttest_rel``, ``bootstrap``); only Holm's step-down is ours (``scipy.stats.false_discovery_control`` offers
Benjamini-Hochberg/Yekutieli, which control the false discovery rate, not the family-wise error Holm does).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from types import ModuleType

Z95 = 1.959964


@functools.cache
def _scipy_stats() -> ModuleType:
    """``scipy.stats``, imported on first use: it costs about 1.3 s, and every evaluation worker imports this module
    (for the curves) without testing anything."""
    from scipy import stats

    return stats


CORRECTIONS = ("holm", "none")

# The bootstrap's settings: fixed, so the same runs give the same interval on every machine and every call.
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0


def confidence_of(z: float) -> float:
    """The two-sided confidence level of ``z`` standard errors (1.959964 -> 0.95)."""
    return float(2 * _scipy_stats().norm.cdf(z) - 1)


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed over ``n`` samples (95% by default).

    ``p`` is an accuracy over ``n`` samples, i.e. a count ``k = round(p n)`` of them (float32 means are not
    exact fractions); the interval is scipy's ``binomtest(k, n).proportion_ci(method="wilson")`` at the
    confidence level of ``z``. Unlike the normal interval it stays inside [0, 1] and is not empty at 0 or n.
    """
    if n <= 0 or p is None or not math.isfinite(p):
        return (0.0, 1.0)
    return _wilson(min(n, max(0, round(p * n))), int(n), float(z))


@functools.lru_cache(maxsize=65536)
def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    # cached: binomtest costs about a millisecond, and results.partial.json re-records every curve after each attack
    ci = _scipy_stats().binomtest(k, n).proportion_ci(confidence_level=confidence_of(z), method="wilson")
    return (max(0.0, float(ci.low)), min(1.0, float(ci.high)))


def paired_counts(robust_a: torch.Tensor, robust_b: torch.Tensor) -> tuple[int, int]:
    """(samples robust under ``a`` but broken by ``b``, samples robust under ``b`` but broken by ``a``)."""
    a, b = robust_a.bool().cpu(), robust_b.bool().cpu()
    return int((a & ~b).sum()), int((b & ~a).sum())


def paired_gap_significant(only_b: int, only_a: int, n: int, z: float = 2.0, min_gap: float = 0.01) -> bool:
    """True iff attack b broke significantly more samples than a: McNemar's z > ``z`` and a gap > ``min_gap`` of n.

    ``only_b``: samples a left standing that b broke; ``only_a``: the reverse. McNemar's statistic (normal
    approximation, no continuity correction): ``(only_b - only_a) / sqrt(only_b + only_a)``.
    """
    gap = only_b - only_a
    if gap <= 0 or n <= 0:
        return False
    return gap / math.sqrt(only_b + only_a) > z and gap / n > min_gap


def one_sided_p(z_value: float) -> float:
    """P(Z > z_value) for a standard normal Z (``scipy.stats.norm.sf``)."""
    return float(_scipy_stats().norm.sf(z_value))


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses of a family Holm's step-down rejects at family-wise error ``alpha`` (Holm 1979).

    The p-values are taken from the smallest; the k-th (k = 0, 1, ...) is rejected while it is
    <= alpha / (m - k), and the first that is not stops the procedure (it and every larger one stand).
    """
    m = len(p_values)
    out = [False] * m
    for k, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        if p_values[i] > alpha / (m - k):
            break
        out[i] = True
    return out


def significant_gaps(
    counts: list[tuple[int, int, int]], z: float = 2.0, min_gap: float = 0.01, correction: str = "holm"
) -> list[bool]:
    """:func:`paired_gap_significant` over the comparisons of one check, corrected for their number.

    ``counts``: ``(only_b, only_a, n)`` per comparison. ``correction="none"``: each at ``z`` on its own.
    ``"holm"`` (:func:`holm`): the level ``alpha = P(Z > z)`` holds for the whole family, so a check that
    makes 30 comparisons (an attack at every eps against PGD) is not failed by one of them crossing ``z`` by
    chance. Each comparison's p-value is McNemar's one-sided normal tail; ``min_gap`` applies to each.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r} must be one of {CORRECTIONS}")
    if correction == "none":
        return [paired_gap_significant(b, a, n, z, min_gap) for b, a, n in counts]
    p_values = [one_sided_p((b - a) / math.sqrt(b + a)) if b > a and n > 0 else 1.0 for b, a, n in counts]
    rejected = holm(p_values, one_sided_p(z))
    return [r and (b - a) / n > min_gap for r, (b, a, n) in zip(rejected, counts)]


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely ``k`` or more of ``n`` samples are hit at a true rate ``p``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(_scipy_stats().binom.sf(k - 1, n, p))


# ---------------------------------------------------------------------------------------------------------------
# Across training runs: two groups of per-seed values (afd-summarize --compare)


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t test of mean(a) - mean(b); ``t``/``df``/``p`` None where it is undefined
    (fewer than two values in a group, or no spread in either)."""

    difference: float
    t: float | None
    df: float | None
    p: float | None  # two-sided
    n_a: int
    n_b: int
    test: str = "welch_t"

    def to_json(self) -> dict:
        return asdict(self)


def welch_test(a: Sequence[float], b: Sequence[float]) -> WelchResult:
    """Welch's t test (``scipy.stats.ttest_ind(equal_var=False)``) of two groups of per-seed values."""
    if not a or not b:
        raise ValueError("welch_test needs at least one value in each group")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return WelchResult(diff, None, None, None, len(x), len(y))
    res = _scipy_stats().ttest_ind(x, y, equal_var=False)
    df = getattr(res, "df", None)  # scipy >= 1.11; before, Welch-Satterthwaite's formula, as scipy computes it
    if df is None:
        va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    return WelchResult(diff, float(res.statistic), float(df), float(res.pvalue), len(x), len(y))


@dataclass(frozen=True)
class PairedTResult:
    """The paired t test of mean(a - b) over matched pairs (two attacks on the same runs); ``t``/``df``/``p`` None
    where it is undefined (fewer than two pairs, or the same difference in every pair)."""

    difference: float
    t: float | None
    df: float | None
    p: float | None  # two-sided
    n: int
    test: str = "paired_t"

    def to_json(self) -> dict:
        return asdict(self)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> PairedTResult:
    """The paired t test (``scipy.stats.ttest_rel``) of per-run values of two measurements of the same runs."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y) or not len(x):
        raise ValueError(f"paired_t_test needs pairs: {len(x)} and {len(y)} values")
    d = x - y
    if len(d) < 2 or np.ptp(d) == 0:
        return PairedTResult(float(d.mean()), None, None, None, len(d))
    res = _scipy_stats().ttest_rel(x, y)
    return PairedTResult(float(d.mean()), float(res.statistic), float(len(d) - 1), float(res.pvalue), len(d))


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap confidence interval of mean(a) - mean(b) (resampling each group within itself)."""

    low: float
    high: float
    confidence: float
    method: str  # scipy's: "BCa"; "percentile" where BCa is undefined; "none" where neither group varies
    resamples: int
    seed: int
    test: str = "bootstrap"

    def to_json(self) -> dict:
        return asdict(self)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _bootstrap(samples, statistic, confidence: float, resamples: int, seed: int) -> BootstrapCI | None:
    """``scipy.stats.bootstrap`` of ``statistic`` with a seeded generator: BCa, or the percentile interval where
    BCa is undefined (scipy returns NaN); None where neither gives a finite interval."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # BCa's 0/0 where it is undefined: handled below
            warnings.simplefilter("ignore", getattr(_scipy_stats(), "DegenerateDataWarning", RuntimeWarning))
            res = _scipy_stats().bootstrap(
                samples,
                statistic,
                vectorized=True,
                n_resamples=resamples,
                confidence_level=confidence,
                method=method,
                random_state=np.random.default_rng(seed),
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return BootstrapCI(low, high, confidence, method, resamples, seed)
    return None


def bootstrap_difference_ci(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> BootstrapCI | None:
    """The bootstrap interval of mean(a) - mean(b) (``scipy.stats.bootstrap``, BCa, a seeded generator).

    None with fewer than two values in a group (a single seed has no spread to resample). With a handful
    of seeds the bootstrap sees only the values it was given, so its interval is narrower than the truth;
    it is reported beside Welch's test, not instead of it. Where BCa's acceleration is undefined (a group
    whose jackknife values are all equal) scipy returns NaN and the percentile interval is used instead.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return None
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        diff = float(x.mean() - y.mean())
        return BootstrapCI(diff, diff, confidence, "none", 0, seed)
    return _bootstrap((x, y), _mean_difference, confidence, resamples, seed)


def bootstrap_mean_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> BootstrapCI | None:
    """The bootstrap interval of mean(values): of paired differences (``scipy.stats.bootstrap``, BCa, seeded).

    None with fewer than two values; the value itself where they are all equal. The same caveat as
    :func:`bootstrap_difference_ci`: with a handful of runs the interval is narrower than the truth.
    """
    d = np.asarray(values, dtype=float)
    if len(d) < 2:
        return None
    if np.ptp(d) == 0:
        return BootstrapCI(float(d[0]), float(d[0]), confidence, "none", 0, seed)
    return _bootstrap((d,), np.mean, confidence, resamples, seed)


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test of paired binary outcomes: of the discordant pairs, ``only_a`` went A's way and
    ``only_b`` B's; under no difference each is Binomial(only_a + only_b, 1/2). ``p`` is two-sided."""

    only_a: int
    only_b: int
    pairs: int  # all pairs, concordant included
    p: float
    test: str = "mcnemar_exact"

    def to_json(self) -> dict:
        return asdict(self)


def mcnemar_exact(only_a: int, only_b: int, pairs: int) -> McNemarResult:
    """The exact (conditional) McNemar test: ``scipy.stats.binomtest(only_a, only_a + only_b, 0.5)``.

    Exact rather than the chi-square approximation because a recipe pair can differ on a handful of images;
    with no discordant pair there is no evidence either way (p = 1).
    """
    if min(only_a, only_b) < 0 or only_a + only_b > pairs:
        raise ValueError(f"discordant counts {only_a}, {only_b} do not fit {pairs} pairs")
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(_scipy_stats().binomtest(only_a, discordant, 0.5).pvalue)
    return McNemarResult(only_a, only_b, pairs, min(1.0, p))

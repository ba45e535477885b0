"""Sampling statistics of robust accuracies: Wilson intervals and paired (per-sample) comparisons.

Every attack of a suite runs on the *same* samples, so two attacks are compared sample by sample
(McNemar's setting): what matters is how many samples one attack broke that the other left
standing, not the difference of two accuracies treated as independent draws.
"""

from __future__ import annotations

import math

import torch

Z95 = 1.959964


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed over ``n`` samples (95% by default)."""
    if n <= 0 or p is None or not math.isfinite(p):
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_counts(robust_a: torch.Tensor, robust_b: torch.Tensor) -> tuple[int, int]:
    """(samples robust under ``a`` but broken by ``b``, samples robust under ``b`` but broken by ``a``)."""
    a, b = robust_a.bool().cpu(), robust_b.bool().cpu()
    return int((a & ~b).sum()), int((b & ~a).sum())


def paired_gap_significant(only_b: int, only_a: int, n: int, z: float = 2.0, min_gap: float = 0.01) -> bool:
    """True iff attack b broke significantly more samples than a: McNemar's z > ``z`` and a gap > ``min_gap`` of n.

    ``only_b``: samples a left standing that b broke; ``only_a``: the reverse.
    """
    gap = only_b - only_a
    if gap <= 0 or n <= 0:
        return False
    return gap / math.sqrt(only_b + only_a) > z and gap / n > min_gap


CORRECTIONS = ("holm", "none")


def one_sided_p(z_value: float) -> float:
    """P(Z > z_value) for a standard normal Z."""
    return 0.5 * math.erfc(z_value / math.sqrt(2))


def significant_gaps(
    counts: list[tuple[int, int, int]], z: float = 2.0, min_gap: float = 0.01, correction: str = "holm"
) -> list[bool]:
    """:func:`paired_gap_significant` over the comparisons of one check, corrected for their number.

    ``counts``: ``(only_b, only_a, n)`` per comparison. ``correction="none"``: each at ``z`` on its own.
    ``"holm"`` (Holm 1979, step-down Bonferroni): the level ``alpha = P(Z > z)`` holds for the whole family, so
    a check that makes 30 comparisons (an attack at every eps against PGD) is not failed by one of them
    crossing ``z`` by chance. The comparisons' one-sided McNemar p-values are sorted; the k-th smallest
    (k = 0, 1, ...) must be <= alpha / (m - k), stopping at the first that is not. ``min_gap`` applies to each.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r} must be one of {CORRECTIONS}")
    if correction == "none":
        return [paired_gap_significant(b, a, n, z, min_gap) for b, a, n in counts]
    alpha = one_sided_p(z)
    p_values = [one_sided_p((b - a) / math.sqrt(b + a)) if b > a and n > 0 else 1.0 for b, a, n in counts]
    out = [False] * len(counts)
    m = len(counts)
    for k, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        if p_values[i] > alpha / (m - k):
            break
        b, a, n = counts[i]
        out[i] = (b - a) / n > min_gap
    return out


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely ``k`` or more of ``n`` samples are hit at a true rate ``p``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0 or p >= 1.0:
        return 0.0 if p <= 0.0 else 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))

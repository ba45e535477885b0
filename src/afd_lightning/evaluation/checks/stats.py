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

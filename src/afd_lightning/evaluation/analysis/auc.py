"""Normalised area under the accuracy-vs-eps curve (the AFD paper's Table 2)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def normalized_auc(eps: Sequence[float], accuracy: Sequence[float]) -> float:
    """Trapezoid area under accuracy(eps) divided by the eps range: a model robust everywhere scores 1.

    ``eps`` must be increasing with at least two distinct values; accuracies are fractions in [0, 1].
    Example: eps [0, 1, 2], accuracy [1.0, 0.5, 0.0] -> (0.75 + 0.25) / 2 = 0.5.
    """
    if len(eps) != len(accuracy):
        raise ValueError(f"eps and accuracy differ in length ({len(eps)} vs {len(accuracy)})")
    if len(eps) < 2 or any(b <= a for a, b in zip(eps, eps[1:])):
        raise ValueError(f"eps must be strictly increasing with at least two values, got {list(eps)}")
    area = sum((b - a) * (fa + fb) / 2 for a, b, fa, fb in zip(eps, eps[1:], accuracy, accuracy[1:]))
    value = area / (eps[-1] - eps[0])
    return value if math.isfinite(value) else math.nan

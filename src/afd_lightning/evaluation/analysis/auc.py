"""Normalised area under the accuracy-vs-eps curve (the AFD paper's Table 2)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def normalized_auc(eps: Sequence[float], accuracy: Sequence[float]) -> float:
    """Trapezoid area under accuracy(eps) (``numpy.trapezoid``) divided by the eps range: robust everywhere scores 1.

    ``eps`` must be increasing with at least two distinct values; accuracies are fractions in [0, 1].
    Example: eps [0, 1, 2], accuracy [1.0, 0.5, 0.0] -> (0.75 + 0.25) / 2 = 0.5.
    """
    x, y = np.asarray(eps, dtype=float), np.asarray(accuracy, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"eps and accuracy differ in length ({len(eps)} vs {len(accuracy)})")
    if x.ndim != 1 or len(x) < 2 or bool(np.any(np.diff(x) <= 0)):
        raise ValueError(f"eps must be strictly increasing with at least two values, got {list(eps)}")
    value = float(np.trapezoid(y, x) / (x[-1] - x[0]))
    return value if math.isfinite(value) else math.nan

"""Confidence intervals for rates, ratios and differences of proportions.

Written out here (a few lines each) rather than pulling in statsmodels: the
formulas are short, closed-form and tested against scipy's binomial quantities.
The normal quantile is the standard library's (:class:`statistics.NormalDist`,
Wichura's AS241, accurate to ~1e-16), so the daemon does not need scipy.

* Wilson score interval for one proportion (Wilson 1927).
* Katz log interval for a ratio of two proportions (Katz et al. 1978).
* Newcombe hybrid score interval for a difference of proportions
  (Newcombe 1998, method 10), built from the two Wilson intervals.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

__all__ = ["z_value", "wilson", "katz_ratio", "newcombe_difference"]


@lru_cache(maxsize=16)
def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile for ``confidence``.

    >>> round(z_value(0.95), 6)
    1.959964
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for ``successes / n``; ``None`` when ``n == 0``.

    >>> lo, hi = wilson(50, 100)
    >>> round(lo, 4), round(hi, 4)
    (0.4038, 0.5962)
    >>> wilson(0, 0) is None
    True
    """
    if n <= 0:
        return None
    z = z_value(confidence)
    p = successes / n
    z2n = z * z / n
    denom = 1.0 + z2n
    centre = (p + z2n / 2.0) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def katz_ratio(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Katz log interval for ``(x1/n1) / (x2/n2)``.

    A zero count gets the usual 0.5 continuity correction on both samples so the
    interval stays finite. ``None`` when a sample is empty.

    >>> lo, hi = katz_ratio(40, 100, 50, 100)
    >>> round(lo, 4), round(hi, 4)
    (0.5868, 1.0906)
    """
    if n1 <= 0 or n2 <= 0:
        return None
    if x1 == 0 or x2 == 0:
        x1, n1, x2, n2 = x1 + 0.5, n1 + 0.5, x2 + 0.5, n2 + 0.5
    z = z_value(confidence)
    log_ratio = math.log((x1 / n1) / (x2 / n2))
    se = math.sqrt(1.0 / x1 - 1.0 / n1 + 1.0 / x2 - 1.0 / n2)
    return math.exp(log_ratio - z * se), math.exp(log_ratio + z * se)


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Newcombe hybrid score interval for ``x1/n1 - x2/n2``.

    Newcombe's own worked example (56/70 vs 48/80) gives 0.0524 … 0.3339:

    >>> lo, hi = newcombe_difference(56, 70, 48, 80)
    >>> round(lo, 4), round(hi, 4)
    (0.0524, 0.3339)
    """
    w1 = wilson(x1, n1, confidence)
    w2 = wilson(x2, n2, confidence)
    if w1 is None or w2 is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    lower = d - math.sqrt((p1 - w1[0]) ** 2 + (w2[1] - p2) ** 2)
    upper = d + math.sqrt((w1[1] - p1) ** 2 + (p2 - w2[0]) ** 2)
    return lower, upper

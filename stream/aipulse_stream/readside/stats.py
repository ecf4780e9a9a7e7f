"""Small interval estimates for the review and the cost model (pure functions, no I/O).

    >>> lo, hi = wilson(3, 100)          # 3 errors in 100 requests
    >>> round(lo, 4), round(hi, 4)
    (0.0103, 0.0845)
    >>> wilson(0, 0)
    (None, None)

Wilson's score interval keeps its coverage near the nominal 95 % for small counts and rates
near 0, where the normal approximation (p +- z sqrt(p(1-p)/n)) collapses to [0, 0].
"""
from __future__ import annotations

import math

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal: a two-sided 95 % interval


def wilson(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """(low, high) of the Wilson score interval for k successes in n trials; Nones when n = 0."""
    if not n:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def total_interval(volume: float, mean: float, sd: float, n_observed: int,
                   z: float = Z95) -> tuple[float, float]:
    """(low, high) of the sum of ``volume`` requests' costs, by the normal approximation.

    Two sources of spread add up: the unknown true mean, estimated from ``n_observed``
    requests (variance volume^2 sd^2 / n), and the sum of ``volume`` independent draws around
    it (variance volume sd^2).

        >>> total_interval(100, 0.01, 0.0, 50)   # no spread: the point, exactly
        (1.0, 1.0)
    """
    point = volume * mean
    if n_observed <= 0:
        return point, point
    var = volume * volume * sd * sd / n_observed + volume * sd * sd
    half = z * math.sqrt(var)
    return max(0.0, point - half), point + half

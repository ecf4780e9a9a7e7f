"""Pure parts of the review and the cost model (no stack)."""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from aipulse_stream.readside.report import MAX_BUCKETS, trend_buckets
from aipulse_stream.readside.stats import total_interval, wilson


def test_wilson_covers_the_true_rate_about_95_percent():
    rng = random.Random(3)
    p, n, hits = 0.02, 400, 0
    for _ in range(2000):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson(k, n)
        hits += lo <= p <= hi
    assert 0.93 <= hits / 2000 <= 0.975
    assert wilson(0, 50)[0] == pytest.approx(0, abs=1e-12) and wilson(0, 50)[1] > 0  # no collapse to [0, 0] at k = 0


def test_total_interval_matches_a_simulated_sum():
    rng = random.Random(5)
    costs = [rng.choice([0.001, 0.001, 0.002, 0.05]) for _ in range(5000)]
    mean = sum(costs) / len(costs)
    sd = math.sqrt(sum((c - mean) ** 2 for c in costs) / (len(costs) - 1))
    lo, hi = total_interval(1000, mean, sd, len(costs))
    sums = sorted(sum(rng.choice(costs) for _ in range(1000)) for _ in range(400))
    inside = sum(lo <= s <= hi for s in sums) / len(sums)
    assert inside >= 0.9 and lo < 1000 * mean < hi


@pytest.mark.parametrize("span", [timedelta(minutes=7), timedelta(hours=3), timedelta(days=30), timedelta(days=400)])
def test_trend_buckets_tile_the_range(span):
    a = datetime(2026, 11, 1, 0, 0, 7, tzinfo=timezone.utc)
    b = trend_buckets(a, a + span)
    assert b[0][0] == a and b[-1][1] == a + span and len(b) <= MAX_BUCKETS + 1
    assert all(x[1] == y[0] for x, y in zip(b, b[1:]))

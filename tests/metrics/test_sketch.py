"""The latency sketch holds its 1% guarantee, alone and merged, on heavy-tailed data."""
from __future__ import annotations

import math
import random
import time

import pytest

from aipulse_catalog import sketch
from aipulse_catalog.sketch import (
    ALPHA, MIN_VALUE_MS, ZERO_KEY, LatencySketch, exact_quantile, key, quantile_from_buckets,
    rank_index, value,
)

QS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0)
N_MUST_SHOW = 200_000


def heavy_tailed(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            out.append(rng.lognormvariate(5.0, 1.2))
        elif r < 0.95:
            out.append(50 * rng.paretovariate(1.1))   # infinite variance
        else:
            out.append(rng.lognormvariate(0.0, 3.0))  # spans 1e-4 .. 1e4 ms
    return out


def rel_err(got: float, want: float) -> float:
    if want < MIN_VALUE_MS:
        return 0.0 if got == 0.0 else math.inf
    return abs(got - want) / want


def test_every_value_reads_back_within_alpha():
    rng = random.Random(1)
    xs = [MIN_VALUE_MS, 1.0, GAMMA_EDGE := sketch.GAMMA**10, 1e7] + [10 ** rng.uniform(-2, 8) for _ in range(100_000)]
    worst = max(abs(value(key(x)) - x) / x for x in xs)
    assert worst <= ALPHA * (1 + 1e-12), worst
    assert key(GAMMA_EDGE) in (10, 11)  # float rounding at an exact boundary may go either way
    assert key(0.0) == key(MIN_VALUE_MS / 2) == ZERO_KEY and value(ZERO_KEY) == 0.0


def test_key_is_monotone():
    xs = sorted(10 ** random.Random(2).uniform(-3, 7) for _ in range(50_000))
    keys = [key(x) for x in xs]
    assert keys == sorted(keys)


def test_rank_rule_is_the_lower_quantile():
    data = [10.0, 20.0, 30.0, 40.0]
    assert [rank_index(q, 4) for q in (0, 0.33, 0.34, 0.5, 0.99, 1)] == [0, 0, 1, 1, 2, 3]
    assert exact_quantile(data, 0.5) == 20.0
    s = LatencySketch()
    s.add_many(data)
    assert abs(s.quantile(0.5) - 20.0) <= 0.2
    assert math.isnan(LatencySketch().quantile(0.5))
    one = LatencySketch()
    one.add(123.0)
    assert all(abs(one.quantile(q) - 123.0) <= 1.23 for q in QS)
    with pytest.raises(ValueError):
        rank_index(1.5, 3)


def test_must_show_200k_heavy_tailed_merged_across_keys_and_windows(capsys):
    """200k latencies spread over 12 keys x 30 windows; quantiles of single sketches, of
    keys merged across windows, and of everything merged, against the exact values."""
    values = heavy_tailed(N_MUST_SHOW, seed=3)
    rng = random.Random(4)
    cells: dict[tuple[int, int], LatencySketch] = {}
    raw: dict[tuple[int, int], list[float]] = {}
    for x in values:
        cell = (rng.randrange(12), rng.randrange(30))
        cells.setdefault(cell, LatencySketch()).add(x)
        raw.setdefault(cell, []).append(x)

    worst = {"single cell": 0.0, "key across windows": 0.0, "window across keys": 0.0, "all merged": 0.0}
    checks = 0

    def check(kind, sketches, data):
        nonlocal checks
        merged: dict[int, int] = {}
        for s in sketches:
            sketch.merge_buckets(merged, s.buckets)
        data = sorted(data)
        for q in QS:
            e = rel_err(quantile_from_buckets(merged, q), exact_quantile(data, q))
            worst[kind] = max(worst[kind], e)
            checks += 1

    for cell in list(cells)[:40]:
        check("single cell", [cells[cell]], raw[cell])
    for k in range(12):
        ks = [c for c in cells if c[0] == k]
        check("key across windows", [cells[c] for c in ks], [x for c in ks for x in raw[c]])
    for w in range(0, 30, 5):
        ws = [c for c in cells if c[1] == w]
        check("window across keys", [cells[c] for c in ws], [x for c in ws for x in raw[c]])
    check("all merged", cells.values(), values)

    with capsys.disabled():
        print(f"\n[sketch] {N_MUST_SHOW} heavy-tailed latencies, {len(cells)} sketches, {checks} quantile checks:")
        for kind, e in worst.items():
            print(f"[sketch]   max relative error, {kind:<20} {100 * e:.4f} %  (bound {100 * ALPHA:.0f} %)")
    assert max(worst.values()) <= ALPHA * (1 + 1e-9)


def test_merge_equals_building_from_all_values():
    values = heavy_tailed(20_000, seed=5)
    a, b, whole = LatencySketch(), LatencySketch(), LatencySketch()
    a.add_many(values[:7000])
    b.add_many(values[7000:])
    whole.add_many(values)
    a.merge(b)
    assert a == whole and a.count == whole.count == 20_000


def test_speed_against_ddsketch(capsys):
    ddsketch = pytest.importorskip("ddsketch")
    values = heavy_tailed(100_000, seed=6)
    ours = LatencySketch()
    t = time.perf_counter()
    for x in values:
        ours.add(x)
    t_ours = time.perf_counter() - t
    theirs = ddsketch.DDSketch(relative_accuracy=ALPHA)
    t = time.perf_counter()
    for x in values:
        theirs.add(x)
    t_theirs = time.perf_counter() - t
    with capsys.disabled():
        print(f"\n[sketch] add() per value: ours {1e9 * t_ours / len(values):.0f} ns, "
              f"ddsketch {1e9 * t_theirs / len(values):.0f} ns, {len(ours)} buckets")
    assert t_ours < 5e-6 * len(values)  # far below the per-event budget of a worker

"""Every catalog figure's SQL, run on the engine over stored window rows, equals its Python
twin (``Figure.value``) over the same rows summed in Python, and the gauges' queries give
what the rows say. (In tests/metrics: the metrics tests' shared chDB engine.)"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from aipulse.contract import Evaluation, Feedback, Interaction
from aipulse_catalog.columns import WINDOW_COLUMNS
from aipulse_catalog.figures import FIGURES, gauge_sql
from aipulse_catalog.sketch import merge_buckets
from aipulse_stream.transforms.join import JoinedKey, ts_ms
from aipulse_stream.transforms.windows import WindowAggregator

LAG_S = 7.0


def _rows(settings):
    rng = random.Random(9)
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    agg = WindowAggregator(settings, "t")
    off = 0
    for i in range(800):
        ts = t0 + timedelta(milliseconds=400 * i)
        unpriced = rng.random() < 0.05
        e = Interaction(event_id=f"i{i}", ts=ts, service="s", feature=rng.choice(["a", "b"]), model="m",
                        latency_ms=rng.lognormvariate(5, 1), ttft_ms=rng.lognormvariate(3, 0.5),
                        outcome=rng.choice(["ok"] * 8 + ["error", "timeout", "refused", "rejected_input"]),
                        fallback_depth=rng.choice([0] * 9 + [1]), confidence=rng.random(),
                        input_tokens=rng.randrange(1, 100), output_tokens=rng.randrange(0, 50),
                        cost_usd=None if unpriced else rng.uniform(0, 0.01), user_id=f"u{rng.randrange(20)}")
        agg.add(0, off, e)
        off += 1
        key = JoinedKey(e.service, e.feature, e.model, e.variant, ts_ms(ts))
        if rng.random() < 0.3:
            agg.add(0, off, Feedback(event_id=f"f{i}", interaction_id=e.interaction_id, ts=ts, service="s",
                                     feedback_type=rng.choice(["thumbs_up", "thumbs_down", "task_completed",
                                                               "task_failed", "human_correction"])), key)
            off += 1
        if rng.random() < 0.2:
            agg.add(0, off, Evaluation(event_id=f"v{i}", interaction_id=e.interaction_id, ts=ts, service="s",
                                       correct=rng.random() < 0.8, score=rng.random(),
                                       source=rng.choice(["shadow", "ground_truth"])), key)
            off += 1
    return agg.drain_rows()


def _python_sums(rows) -> dict:
    sums: dict = {}
    for c in WINDOW_COLUMNS:
        if c.merge == "sum":
            sums[c.name] = sum(r[c.name] for r in rows)
        elif c.merge == "sum_map":
            acc: dict = {}
            for r in rows:
                merge_buckets(acc, r[c.name])
            sums[c.name] = acc
        elif c.merge == "uniq_array":
            sums[c.name] = len({u for r in rows for u in r[c.name]})
        else:
            vals = [r[c.name] for r in rows if r[c.name] is not None]
            sums[c.name] = max(vals) if vals else None
    return sums


def test_every_figure_sql_equals_its_python_twin(ch):
    client, settings = ch
    rows = _rows(settings)
    cols = list(rows[0])
    written = [{**r, "written_at": r["max_ts"] + timedelta(seconds=LAG_S)} for r in rows]
    client.insert(f"{settings.database}.metrics_window", [[r[c] for c in cols + ["written_at"]] for r in written],
                  column_names=cols + ["written_at"])
    sums = _python_sums(rows)
    assert sums["unpriced_requests"] > 0 and sums["requests"] > sums["unpriced_requests"]
    duration = 600
    checked = 0
    for f in FIGURES.values():
        if f.kind in ("gauge", "user_sum"):
            continue
        sql = f"SELECT toFloat64({f.sql(duration_s=str(duration))}) FROM {settings.database}.metrics_window FINAL"
        got = client.query(sql).result_rows[0][0]
        want = sums["users"] if f.kind == "distinct" else f.value(sums, duration)
        if want is None:
            assert got is None, f.name
        else:
            assert got == pytest.approx(float(want), rel=1e-9, abs=1e-12), f.name
        checked += 1
    assert checked >= 40

    now = max(r["max_ts"] for r in rows) + timedelta(seconds=30)
    now_sql = f"toDateTime64('{now:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
    silence = client.query(gauge_sql("silence_s", settings.database, 60, now=now_sql)).result_rows[0][0]
    assert silence == pytest.approx(30.0 - (max(r["max_ts"] for r in rows).microsecond / 1e6), abs=1e-3)
    lag_now = f"toDateTime64('{now + timedelta(seconds=LAG_S):%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
    lag = client.query(gauge_sql("pipeline_lag_s", settings.database, 3600, now=lag_now)).result_rows[0][0]
    assert lag == pytest.approx(LAG_S, abs=1e-3)

"""The metrics tables, rollups and quantile function on the real ClickHouse engine (chDB)."""
from __future__ import annotations

import math
import random
from datetime import datetime, timezone

from gen import T0, generate
from harness import TOPIC, ClickHouseStore, MemoryStore, run_stream

from aipulse_stream.config import Settings
from aipulse_stream.readside.query import metrics_query, plan_segments
from aipulse_catalog.sketch import LatencySketch, quantile_from_buckets
from aipulse_stream.transforms.windows import WindowAggregator, load_watermark

from test_sketch import heavy_tailed

QS = (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def test_sql_quantile_equals_python_on_random_merged_sketches(ch):
    client, _ = ch
    rng = random.Random(8)
    maps = []
    for i in range(30):
        s = LatencySketch()
        s.add_many(heavy_tailed(rng.randrange(1, 3000), seed=i))
        maps.append(s.to_map())
    client.command("CREATE TEMPORARY TABLE sk (g UInt8, b Map(Int32, UInt64))")
    client.insert("sk", [[i % 3, m] for i, m in enumerate(maps)], column_names=["g", "b"])
    for q in QS:
        got = dict(client.query(f"SELECT g, aipulse_quantile({q}, sumMap(b)) FROM sk GROUP BY g").result_rows)
        for g in range(3):
            merged: dict[int, int] = {}
            for m in maps[g::3]:
                for k, c in m.items():
                    merged[k] = merged.get(k, 0) + c
            want = quantile_from_buckets(merged, q)
            assert math.isclose(got[g], want, rel_tol=1e-12), (q, g, got[g], want)
    empty = client.query("SELECT aipulse_quantile(0.5, map()::Map(Int32, UInt64))").result_rows[0][0]
    assert math.isnan(empty)


def test_pure_sql_alternative_quantile_exact_weighted_stays_within_one_percent(ch):
    """docs/metrics.md: ARRAY JOIN + quantileExactWeighted over bucket values also keeps the
    1% guarantee, up to its own rank rule (it may pick the neighbouring rank)."""
    client, _ = ch
    values = heavy_tailed(20_000, seed=9)
    s = LatencySketch()
    s.add_many(values)
    client.command("CREATE TEMPORARY TABLE sk2 (b Map(Int32, UInt64))")
    client.insert("sk2", [[s.to_map()]], column_names=["b"])
    got = client.query(
        "SELECT quantileExactWeighted(0.99)(aipulse_sketch_value(k), c) FROM sk2 "
        "ARRAY JOIN mapKeys(b) AS k, mapValues(b) AS c").result_rows[0][0]
    data = sorted(values)
    lo, hi = data[int(0.99 * (len(data) - 1))], data[int(0.99 * (len(data) - 1)) + 1]
    assert lo * 0.99 <= got <= hi * 1.01


def test_replayed_rows_replace_never_add(ch):
    client, settings = ch
    records = generate(3000, seed=2)
    s = Settings(database=settings.database, offset_block=400)
    store = ClickHouseStore(client, s)
    restarts = run_stream(records, s, store, crashes=4, seed=4, batch_size=500)
    assert restarts == 4
    clean = MemoryStore()
    run_stream(records, s, clean, seed=4)
    want = sum(r["requests"] for r in clean.windows.values())
    db = settings.database
    raw_sum = client.query(f"SELECT sum(requests), count() FROM {db}.metrics_window").result_rows[0]
    final = client.query(f"SELECT sum(requests), count() FROM {db}.metrics_window FINAL").result_rows[0]
    assert final == (want, len(clean.windows))
    assert raw_sum[1] > final[1]  # the table really holds replaced copies: FINAL matters


def test_rollup_equals_base_after_growing_reinserts(ch):
    """Insert a block, then the same block grown (full state each time), twice more;
    hourly and daily rollups must equal the base table, group by group."""
    client, settings = ch
    db = settings.database
    s = Settings(database=db, offset_block=10_000)
    records = [r for r in generate(4000, seed=6) if r[0] == 0][:2500]
    agg = WindowAggregator(s, TOPIC)
    agg.set_start(0, 0, None)
    store = ClickHouseStore(client, s)
    for cut in (600, 1700, len(records)):  # one block, growing, re-sent in full each time
        for p, o, e in records[:cut]:
            agg.add(p, o, e, None)
        rows = agg.drain_rows()
        store.insert_rows(rows, agg.drain_progress())
    # And one exact replay of everything (same versions).
    replay = WindowAggregator(s, TOPIC)
    replay.set_start(0, 0, None)
    for p, o, e in records:
        replay.add(p, o, e, None)
    store.insert_rows(replay.drain_rows(), replay.drain_progress())

    cols = "sum(requests), sum(errors), sum(cost_usd), sum(latency_sum_ms), sum(feedback_up), sum(late), sum(orphaned), toString(sumMap(latency_buckets)), uniqExactArray(users)"
    for grain, table in (("toStartOfHour", "metrics_hourly"), ("toStartOfDay", "metrics_daily")):
        base = client.query(
            f"SELECT service, feature, model, variant, {grain}(window_start) AS g, {cols} "
            f"FROM {db}.metrics_window FINAL GROUP BY service, feature, model, variant, g ORDER BY ALL").result_rows
        roll = client.query(
            f"SELECT service, feature, model, variant, window_start AS g, {cols} "
            f"FROM {db}.{table} FINAL GROUP BY service, feature, model, variant, g ORDER BY ALL").result_rows
        assert len(base) > 10
        assert [r[:5] + tuple(round(x, 6) if isinstance(x, float) else x for x in r[5:]) for r in roll] == \
               [r[:5] + tuple(round(x, 6) if isinstance(x, float) else x for x in r[5:]) for r in base]
        stale = client.query(f"SELECT sum(requests) FROM {db}.{table}").result_rows[0][0]
        assert stale > sum(r[5] for r in base)  # without FINAL the partial states would add up


def test_load_watermark_reads_the_last_block_before(ch):
    client, settings = ch
    db = settings.database
    assert load_watermark(client, db, TOPIC, 0, 5) is None
    client.insert(f"{db}.partition_progress",
                  [[TOPIC, 0, 2, 2999, 1_714_550_400_123, 10, 0], [TOPIC, 0, 3, 3500, 1_714_550_500_000, 3, 1],
                   [TOPIC, 0, 3, 3999, 1_714_550_600_000, 9, 1], [TOPIC, 1, 4, 4100, 1000, 1, 0]],
                  column_names=["topic", "partition", "block", "version", "watermark_ms", "events", "late"])
    assert load_watermark(client, db, TOPIC, 0, 3) == 1_714_550_400.123
    assert load_watermark(client, db, TOPIC, 0, 4) == 1_714_550_600.0   # the highest version of block 3
    assert load_watermark(client, db, TOPIC, 0, 9) == 1_714_550_600.0   # block 4..8 had no events
    assert load_watermark(client, db, "other", 0, 4) is None


def test_segment_plan_reads_the_same_numbers_from_rollups(ch):
    client, settings = ch
    s = Settings(database=settings.database, offset_block=500)
    records = generate(6000, seed=12)
    run_stream(records, s, ClickHouseStore(client, s), seed=1)
    start = datetime.fromtimestamp(T0 - 8 * 86400, timezone.utc)          # includes the ancient day
    end = datetime.fromtimestamp(T0 + 3 * 3600 + 1234, timezone.utc)
    plan = plan_segments(start, end)
    assert {t for t, _, _ in plan} == {"metrics_window", "metrics_hourly", "metrics_daily"}
    for group_by in ([], ["feature", "variant"]):
        auto = metrics_query(client, s, group_by, start, end)
        base = metrics_query(client, s, group_by, start, end, grain="window")
        assert len(auto) == len(base) > 0
        for a, b in zip(auto, base):
            for k in a:
                if isinstance(a[k], float):
                    assert math.isclose(a[k], b[k], rel_tol=1e-9), k
                else:
                    assert a[k] == b[k], k

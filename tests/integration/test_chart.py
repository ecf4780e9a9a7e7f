"""The demo's latency chart: a PNG whose series are the window rows' merged-sketch quantiles."""
from __future__ import annotations

import time
from datetime import timezone

import pytest

from support import wait_for

pytestmark = pytest.mark.integration


def test_latency_chart_from_window_rows(stack, stack_settings, kafka_bootstrap, ch, service_name, tmp_path):
    import aipulse
    from aipulse_stream.readside.chart import window_series, write_latency_chart
    from aipulse_stream.readside.query import metrics_query

    t0 = (time.time() // stack_settings.window_s) * stack_settings.window_s - 5 * stack_settings.window_s
    aipulse.init(kafka_bootstrap=kafka_bootstrap, service=service_name)
    try:
        for w in range(3):
            for i in range(1, 101):
                aipulse.record(feature="chat", model="m", latency_ms=float(i * (w + 1)), ts=t0 + w * stack_settings.window_s + 1,
                               outcome="error" if i <= w else "ok")
        assert aipulse.flush(30)
    finally:
        aipulse.close()
    rows = wait_for(lambda: (r := window_series(ch, stack_settings, service_name, t0, t0 + 60))
                    and sum(x[2] for x in r) == 300 and r, timeout=60, what="3 windows of 100 requests")
    assert [x[2] for x in rows] == [100, 100, 100] and [x[3] for x in rows] == [0, 1, 2]
    for w, row in enumerate(rows):
        exact_p99 = 99 * (w + 1)  # lower quantile of 1..100 scaled: rank floor(0.99 * 99) = 98 -> value 99
        assert row[6] == pytest.approx(exact_p99, rel=0.01)
        start = row[0].replace(tzinfo=timezone.utc).timestamp()  # naive UTC from clickhouse-connect
        same = metrics_query(ch, stack_settings, [], start, start + stack_settings.window_s,
                             where={"service": [service_name]})
        assert same[0]["latency_p99_ms"] == pytest.approx(row[6], rel=1e-9)
    png = write_latency_chart(ch, stack_settings, service_name, t0, t0 + 60, tmp_path / "latency.png")
    assert png and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

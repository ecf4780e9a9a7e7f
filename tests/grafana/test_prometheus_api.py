"""The previews' Prometheus side, pure: Grafana's interval variables and the matrix -> series
conversion (the drawing code's long_to_series turns the frame into named series)."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from aipulse_grafana.prometheus_api import (align, expand, interval_for, legend, matrix_to_frame, parse_duration,
                                            rate_interval)
from aipulse_grafana.render import long_to_series

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("interval, scrape, want", [
    (10, 2, 12),       # interval + scrape wins
    (2, 2, 8),         # four scrapes win
    (15, 15, 60),      # a 15 s scrape: four scrapes, 1 m
    (120, 15, 135),
    (30, 10, 40),
    (10, 5, 20),
])
def test_rate_interval_is_grafanas_rule(interval, scrape, want):
    assert rate_interval(interval, scrape) == want == max(interval + scrape, 4 * scrape)


def test_interval_variables_are_expanded_in_both_forms():
    expr = ("sum(rate(a_total[$__rate_interval])) / sum(increase(b_total[${__interval}])) "
            "+ $__interval_ms + $__range_s + count_over_time(c[$__range]) + $__range_ms + $unknown")
    assert expand(expr, interval_s=10, scrape_s=2, range_s=600) == (
        "sum(rate(a_total[12s])) / sum(increase(b_total[10s])) + 10000 + 600 + count_over_time(c[600s]) "
        "+ 600000 + $unknown")
    # $__interval must not eat the front of $__interval_ms (or $__rate_interval's tail).
    assert expand("$__interval_ms $__interval $__rate_interval", 5, 5, 60) == "5000 5s 20s"


def test_step_is_the_panel_interval_never_below_the_scrape():
    assert interval_for(T0, T0 + timedelta(minutes=3), 2) == 2         # 0.45 s a point: the scrape
    assert interval_for(T0, T0 + timedelta(hours=1), 2) == 10          # 9 s -> 10 s
    assert interval_for(T0, T0 + timedelta(hours=1), 15) == 15
    assert interval_for(T0, T0 + timedelta(days=1), 15) == 300         # 216 s -> 5 m
    assert align(T0 + timedelta(seconds=17), 10) == T0 + timedelta(seconds=10)


def test_durations():
    assert parse_duration("2s") == 2
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_duration("2 s")


def test_legend_format():
    assert legend("{{table}}", {"table": "interactions", "job": "w"}) == "interactions"
    assert legend("{{ breaker }} -> {{to}}", {"breaker": "primary", "to": "open"}) == "primary -> open"
    assert legend("{{missing}}/s", {}) == "/s"
    assert legend("", {"__name__": "up", "job": "w", "instance": "a"}) == 'up{instance="a", job="w"}'
    assert legend(None, {}) == "{}"


def test_matrix_becomes_named_series_with_values_and_gaps():
    t = T0.timestamp()
    result = [
        {"metric": {"kind": "interaction"}, "values": [[t, "1.5"], [t + 2, "2"], [t + 4, "NaN"]]},
        # a gap of three steps (the target was down), then an infinite value (a quantile with no data)
        {"metric": {"kind": "feedback"}, "values": [[t, "0"], [t + 8, "+Inf"], [t + 10, "4"]]},
        {"metric": {"kind": "empty"}, "values": [[t, "NaN"]]},
    ]
    cols, rows = matrix_to_frame(result, "stored {{kind}}/s", step_s=2)
    series = long_to_series(cols, rows)
    assert list(series) == ["stored interaction/s", "stored feedback/s"]  # the all-NaN series is dropped
    xs, ys = series["stored interaction/s"]
    assert [x.timestamp() - t for x in xs] == [0, 2, 4]
    assert ys[:2] == [1.5, 2.0] and math.isnan(ys[2])
    xs, ys = series["stored feedback/s"]
    # a NaN just after the last point before the gap keeps the line from crossing it
    assert [x.timestamp() - t for x in xs] == [0, 2, 8, 10]
    assert ys[0] == 0 and math.isnan(ys[1]) and math.isnan(ys[2]) and ys[3] == 4
    assert all(x.tzinfo is not None for x in xs)


def test_single_unlabelled_series_keeps_its_legend():
    cols, rows = matrix_to_frame([{"metric": {}, "values": [[T0.timestamp(), "3"]]}], "window lag")
    assert long_to_series(cols, rows) == {"window lag": ([T0], [3.0])}


def test_scrape_interval_from_the_servers_config():
    from aipulse_grafana.prometheus_api import GRAFANA_SCRAPE_S, scrape_interval_of

    assert scrape_interval_of("global: {scrape_interval: 2s}\nscrape_configs: [{job_name: w}]") == 2
    assert scrape_interval_of("global: {scrape_interval: 2s}\nscrape_configs: [{job_name: w, scrape_interval: 1m}]") == 60
    assert scrape_interval_of("scrape_configs: []") == GRAFANA_SCRAPE_S
    assert scrape_interval_of(": not yaml : [") == GRAFANA_SCRAPE_S

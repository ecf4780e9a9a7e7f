"""The catalog itself: its docstring examples, one name per figure, and that every consumer
takes its names from it (rule metrics, read side, dashboard figures)."""
from __future__ import annotations

import doctest

import pytest

from aipulse_catalog import columns, figures, render, sketch
from aipulse_catalog.columns import COLUMNS, COUNT_COLUMNS, FLOAT_COLUMNS, WINDOW_COLUMNS
from aipulse_catalog.figures import FIGURES, gauge_sql


@pytest.mark.parametrize("module", [columns, figures, render, sketch])
def test_docstring_examples(module):
    failed, tried = doctest.testmod(module)
    assert failed == 0 and (tried > 0 or module is render)


def test_names_are_unique_and_columns_known():
    assert len({c.name for c in WINDOW_COLUMNS}) == len(WINDOW_COLUMNS)
    for f in FIGURES.values():
        for c in f.numerator + f.denominator + f.volume:
            assert c in COLUMNS, (f.name, c)
        assert f.bad in ("high", "low", None)
        assert f.unit and f.description


def test_no_second_name_for_a_figure():
    # the names the first version used beside the catalog's
    for old in ("p50_ms", "p95_ms", "p99_ms", "run_rate_usd_month"):
        assert old not in FIGURES


def test_the_aggregator_and_the_evaluator_use_the_catalog_columns():
    from aipulse_stream.transforms import windows

    assert windows.COUNT_COLUMNS is COUNT_COLUMNS and windows.FLOAT_COLUMNS is FLOAT_COLUMNS
    assert "unpriced_requests" in COUNT_COLUMNS


def test_rule_metrics_are_catalog_figures():
    from aipulse_alerts.rules import METRICS, Metric, load_rules

    assert {m.value for m in Metric} <= set(FIGURES)
    for m, d in METRICS.items():
        assert d.figure is FIGURES[m.value]
    for r in load_rules().rules:
        assert r.metric.value in FIGURES


def test_read_side_and_dashboard_figures_are_catalog_names():
    from aipulse_grafana.sqlparts import FIGURES as PANEL_FIGURES
    from aipulse_stream.readside.query import ALL_FIGURES, QUANTILE_FIGURES, RATIOS

    assert set(PANEL_FIGURES) <= set(FIGURES)
    assert set(ALL_FIGURES) <= set(FIGURES) | set(COLUMNS)
    assert {"latency_p99_ms", "ttft_p95_ms"} <= set(QUANTILE_FIGURES) and "unpriced_rate" in RATIOS
    for name, expr in PANEL_FIGURES.items():
        if FIGURES[name].kind not in ("rate",):
            assert expr == FIGURES[name].sql("w."), name


def test_python_twin_of_the_sql():
    sums = {c: 0 for c in COLUMNS}
    sums.update(requests=200, errors=10, unpriced_requests=4, cost_usd=2.0, feedback_up=3, feedback_down=1,
                latency_buckets={sketch.key(100.0): 99, sketch.key(1000.0): 1})
    assert FIGURES["error_rate"].value(sums) == 0.05
    assert FIGURES["availability"].value(sums) == 0.95
    assert FIGURES["unpriced_rate"].value(sums) == 0.02
    assert FIGURES["satisfaction"].value(sums) == 0.75
    assert FIGURES["accuracy"].value(sums) is None  # nothing evaluated
    assert abs(FIGURES["latency_p50_ms"].value(sums) - 100.0) <= 1.0
    assert FIGURES["cost_run_rate_usd_month"].value(sums, 3600) == pytest.approx(2.0 * 720)
    with pytest.raises(ValueError, match="duration_s"):
        FIGURES["cost_run_rate_usd_month"].sql()


def test_gauges_have_one_query_each():
    s = gauge_sql("silence_s", "db", 60, ("service",))
    assert "max(max_ts)" in s and "GROUP BY service" in s
    lag = gauge_sql("pipeline_lag_s", "db", 60)
    assert "written_at" in lag and "INTERVAL 60 SECOND" in lag
    with pytest.raises(ValueError, match="not a gauge"):
        gauge_sql("error_rate", "db", 60)

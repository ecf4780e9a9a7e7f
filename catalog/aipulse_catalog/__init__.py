"""The metric catalog: window columns, the figures derived from them, and the one sketch.

The lowest floor beside the event contract: stream/ (the aggregator, the read side), alerts/
(the rule model, the evaluator) and dashboards/ (panels, Grafana rules) all read their
definitions from here, and docs/metrics.md's tables are rendered from it::

    >>> from aipulse_catalog import COLUMNS, FIGURES
    >>> COLUMNS["unpriced_requests"].merge, FIGURES["latency_p99_ms"].unit
    ('sum', 'ms')
"""
from .columns import COLUMNS, COUNT_COLUMNS, FLOAT_COLUMNS, KEY_COLUMNS, SUM_COLUMNS, WINDOW_COLUMNS, Column
from .figures import FIGURES, MONTH_S, QUANTILES, Figure, gauge_sql

__all__ = ["COLUMNS", "COUNT_COLUMNS", "FLOAT_COLUMNS", "KEY_COLUMNS", "SUM_COLUMNS", "WINDOW_COLUMNS", "Column",
           "FIGURES", "MONTH_S", "QUANTILES", "Figure", "gauge_sql"]

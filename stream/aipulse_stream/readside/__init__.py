"""The read side: merged metrics from the window rows (``aipulse metrics``, dashboards, tests).

    from aipulse_stream.readside import metrics_query, exact_metrics, FIGURES
"""
from .exact import assert_metrics_match, compare, exact_metrics
from .query import DIMENSIONS, FIGURES, metrics_query, metrics_sql, plan_segments

__all__ = [
    "DIMENSIONS", "FIGURES", "metrics_query", "metrics_sql", "plan_segments",
    "exact_metrics", "compare", "assert_metrics_match",
]

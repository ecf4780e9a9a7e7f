"""The read side: merged metrics from the window rows (``aipulse metrics``, dashboards, tests).

    from aipulse_stream.readside import metrics_query, FIGURES

The exact reference the tests compare it with lives in tests/oracles/exact.py (test-only).
"""
from .query import DIMENSIONS, FIGURES, metrics_query, metrics_sql, plan_segments

__all__ = [
    "DIMENSIONS", "FIGURES", "metrics_query", "metrics_sql", "plan_segments",
]

"""The mergeable columns of a window row: name, ClickHouse type, and how rows merge.

A window row (``metrics_window`` and its 1 h / 1 d rollups) is the contribution of one offset
block of one partition to one (window, key); any set of rows is merged column by column with
the column's ``merge``::

    >>> from aipulse_catalog.columns import COLUMNS, by_merge
    >>> COLUMNS["latency_buckets"].ch_type, COLUMNS["latency_buckets"].merge
    ('Map(Int32, UInt64)', 'sum_map')
    >>> COLUMNS["requests"].merge_sql()
    'sum(requests)'
    >>> "unpriced_requests" in by_merge("sum", "UInt64")
    True

``merge`` is one of:

- ``sum``: a plain sum (counters ``UInt64``, sums ``Float64``);
- ``sum_map``: maps summed key-wise (``sumMap``; the latency sketch buckets, a histogram);
- ``uniq_array``: an array of distinct values, merged by union (``groupUniqArrayArray``);
- ``max``: the largest value (``max``; Nullable columns keep NULL when all are NULL).

Adding a counter: append a :class:`Column` to ``WINDOW_COLUMNS`` with the migration that
adds it (``added_in``), count it in the aggregator (stream/aipulse_stream/transforms/windows.py),
and write the migration ``python -m aipulse_catalog.render migration NNN`` prints
(tests/catalog/test_migrations.py fails until the files match the catalog). The read side,
the rule model, the dashboards and docs/metrics.md take it from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Merge = Literal["sum", "sum_map", "uniq_array", "max"]
_MERGE_SQL = {"sum": "sum", "sum_map": "sumMap", "max": "max"}

# The key of a window row, and where it comes from (not merged: grouped by or identity).
KEY_COLUMNS = ("service", "feature", "model", "variant")
IDENTITY_COLUMNS = ("window_start", "topic", "partition", "block", "version", "window_s")


@dataclass(frozen=True)
class Column:
    """One mergeable column of ``metrics_window`` (and of ``metrics_hourly``/``metrics_daily``)."""

    name: str
    ch_type: str
    merge: Merge
    meaning: str
    added_in: int = 2  # the migration that creates it (002 = the original table)

    def merge_sql(self, qualify: str = "") -> str:
        """The aggregate that merges this column over rows (``qualify``: a table alias + '.')."""
        col = f"{qualify}{self.name}"
        if self.merge == "uniq_array":
            return f"arraySort(groupUniqArrayArray({col}))"
        return f"{_MERGE_SQL[self.merge]}({col})"


def _c(name: str, ch_type: str, merge: Merge, meaning: str, added_in: int = 2) -> Column:
    return Column(name, ch_type, merge, meaning, added_in)


U, F = "UInt64", "Float64"
# In table order (migration 002, then later migrations' columns at the end).
WINDOW_COLUMNS: tuple[Column, ...] = (
    _c("requests", U, "sum", "non-shadow interactions"),
    _c("errors", U, "sum", "outcome error or timeout"),
    _c("timeouts", U, "sum", "outcome timeout"),
    _c("fallbacks", U, "sum", "fallback_depth > 0 or outcome fallback"),
    _c("fallback_depth", "Map(UInt8, UInt64)", "sum_map", "histogram of fallback depths > 0"),
    _c("escalations", U, "sum", "outcome escalated"),
    _c("refused", U, "sum", "outcome refused"),
    _c("rejected_input", U, "sum", "outcome rejected_input"),
    _c("rejected_output", U, "sum", "outcome rejected_output"),
    _c("low_confidence", U, "sum", "confidence < AIPULSE_LOW_CONFIDENCE_THRESHOLD (0.5)"),
    _c("cached", U, "sum", "cached = true"),
    _c("input_tokens", U, "sum", "input tokens"),
    _c("output_tokens", U, "sum", "output tokens"),
    _c("cost_usd", F, "sum", "sum of known costs (USD)"),
    _c("cost_missing", U, "sum", "interactions without a cost (with or without tokens)"),
    _c("latency_sum_ms", F, "sum", "sum of latencies (ms)"),
    _c("latency_buckets", "Map(Int32, UInt64)", "sum_map", "the latency sketch (aipulse_catalog.sketch)"),
    _c("ttft_count", U, "sum", "interactions with a time to first token"),
    _c("ttft_sum_ms", F, "sum", "sum of times to first token (ms)"),
    _c("ttft_buckets", "Map(Int32, UInt64)", "sum_map", "the time-to-first-token sketch"),
    _c("users", "Array(UInt64)", "uniq_array", "distinct 64-bit hashes (blake2b) of non-empty user ids"),
    _c("shadow_requests", U, "sum", "shadow interactions (never user traffic)"),
    _c("shadow_pairs", U, "sum", "shadow evaluations (source = shadow)"),
    _c("shadow_disagreements", U, "sum", "shadow evaluations with correct = false"),
    _c("feedback_up", U, "sum", "joined feedback thumbs_up"),
    _c("feedback_down", U, "sum", "joined feedback thumbs_down"),
    _c("task_completed", U, "sum", "joined feedback task_completed"),
    _c("task_failed", U, "sum", "joined feedback task_failed"),
    _c("corrections", U, "sum", "joined feedback human_correction"),
    _c("escalations_resolved", U, "sum", "joined feedback escalation_resolved"),
    _c("evaluated", U, "sum", "non-shadow evaluations with a correct verdict"),
    _c("correct", U, "sum", "... of which correct = true"),
    _c("eval_scored", U, "sum", "non-shadow evaluations with a score"),
    _c("eval_score_sum", F, "sum", "sum of those scores"),
    _c("late", U, "sum", "events behind the watermark by more than the allowed lateness"),
    _c("orphaned", U, "sum", "feedback/evaluations whose interaction is unknown"),
    _c("rollout_stage", "Nullable(Float32)", "max", "highest rollout stage seen"),
    _c("max_ts", "DateTime64(3, 'UTC')", "max", "newest event time in the row"),
    # -- later migrations -------------------------------------------------------------------
    _c("unpriced_requests", U, "sum",
       "interactions with tokens but no cost: model in no price table (SDK cost_source unknown)", 7),
)
COLUMNS: dict[str, Column] = {c.name: c for c in WINDOW_COLUMNS}


def by_merge(merge: Merge, ch_type: str | None = None) -> tuple[str, ...]:
    """Names of the columns merged by ``merge`` (and of ``ch_type`` when given), in table order."""
    return tuple(c.name for c in WINDOW_COLUMNS if c.merge == merge and (ch_type is None or c.ch_type == ch_type))


# The aggregator's integer counters and float sums (each a plain sum), in table order.
COUNT_COLUMNS = by_merge("sum", "UInt64")
FLOAT_COLUMNS = by_merge("sum", "Float64")
SUM_COLUMNS = by_merge("sum")
SKETCH_COLUMNS = ("latency_buckets", "ttft_buckets")

"""The figures derived from the window columns: one name, one definition, rendered everywhere.

    >>> from aipulse_catalog.figures import FIGURES
    >>> f = FIGURES["error_rate"]
    >>> f.sql()
    'sum(errors) / nullIf(sum(requests), 0)'
    >>> f.value({"errors": 3, "requests": 60}), f.unit, f.bad
    (0.05, 'ratio', 'high')
    >>> FIGURES["latency_p99_ms"].sql("w.")
    'aipulse_quantile(0.99, sumMap(w.latency_buckets))'
    >>> FIGURES["cost_run_rate_usd_month"].sql(duration_s="3600")
    'sum(cost_usd) * 2592000 / (3600)'

Kinds (``kind``):

- ``count``: the sum of ``numerator`` columns (``requests``, ``unpriced_requests``...);
- ``ratio``: sum(numerator) / sum(denominator), never an average of rates; ``complement``
  makes it 1 - ratio (availability); None (SQL NULL) when the denominator is 0;
- ``quantile``: the ``q``-quantile of the merged sketch in ``buckets`` (SQL function
  ``aipulse_quantile``, Python :func:`aipulse_catalog.sketch.quantile_from_buckets`);
- ``rate``: sum(numerator) * ``per_s`` / the duration in seconds (a run-rate; per_s = 1
  gives per second, ``MONTH_S`` per month);
- ``distinct``: distinct users (``uniqExactArray``); ``max``: the largest value;
- ``gauge``: a time about the pipeline itself, in seconds, from the window rows' ``max_ts``
  (newest event time) and ``written_at`` (see ``silence_s`` and ``pipeline_lag_s``);
- ``user_sum``: one user's sum of a raw interaction column (per-user spend).

``bad`` says which direction is worse (``high``, ``low``, or None for plain volumes): the
generators pick the comparison from it. ``volume`` is what a rule's ``min_volume`` counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

from .columns import COLUMNS
from .sketch import quantile_from_buckets

MONTH_S = 30 * 86400  # a "month" for run-rates: 30 days, as the cost ceiling is monthly
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}

Kind = Literal["count", "ratio", "quantile", "rate", "distinct", "max", "gauge", "user_sum"]


@dataclass(frozen=True)
class Figure:
    """One figure: how it is computed from merged window columns, its unit, its bad side."""

    name: str
    kind: Kind
    unit: str
    bad: Literal["high", "low"] | None
    description: str
    numerator: tuple[str, ...] = ()
    denominator: tuple[str, ...] = ()
    complement: bool = False
    buckets: str | None = None
    q: float | None = None
    per_s: int = 1
    volume: tuple[str, ...] = ()

    def sql(self, qualify: str = "", duration_s: str | None = None) -> str:
        """The aggregate expression over window rows. ``qualify`` prefixes column names
        (``"w."``); ``duration_s`` is the SQL for the range's length in seconds (``rate``)."""
        def s(cols):
            return " + ".join(f"sum({qualify}{c})" for c in cols)

        k = self.kind
        if k == "count":
            return s(self.numerator)
        if k == "ratio":
            den = s(self.denominator)
            ratio = f"{_paren(s(self.numerator))} / nullIf({den}, 0)"
            return f"1 - {ratio}" if self.complement else ratio
        if k == "quantile":
            return f"aipulse_quantile({self.q}, sumMap({qualify}{self.buckets}))"
        if k == "rate":
            if duration_s is None:
                raise ValueError(f"{self.name} is a rate: give duration_s (the range's length in seconds)")
            scale = f" * {self.per_s}" if self.per_s != 1 else ""
            return f"{_paren(s(self.numerator))}{scale} / ({duration_s})"
        if k == "distinct":
            return f"uniqExactArray({qualify}{self.numerator[0]})"
        if k == "max":
            return f"max({qualify}{self.numerator[0]})"
        raise ValueError(f"{self.name} ({k}) is not computed from window rows")

    def value(self, sums: Mapping[str, float], duration_s: float | None = None) -> float | None:
        """The figure from summed columns (``sums[col]``; sketches as ``{key: count}`` maps).
        None when undefined (empty denominator or sketch). The Python twin of :meth:`sql`."""
        k = self.kind
        if k == "count":
            return sum(sums[c] for c in self.numerator)
        if k == "max":  # already merged by max
            return sums[self.numerator[0]]
        if k == "ratio":
            den = sum(sums[c] for c in self.denominator)
            if not den:
                return None
            r = sum(sums[c] for c in self.numerator) / den
            return 1 - r if self.complement else r
        if k == "quantile":
            q = quantile_from_buckets(sums[self.buckets] or {}, self.q)
            return None if math.isnan(q) else q
        if k == "rate":
            return sum(sums[c] for c in self.numerator) * self.per_s / duration_s
        raise ValueError(f"{self.name} ({k}) has no value from summed columns")


def _paren(expr: str) -> str:
    return f"({expr})" if " + " in expr else expr


def gauge_sql(name: str, db: str, window_s: int, group_by: tuple[str, ...] = (), where: str = "",
              now: str = "$__toTime") -> str:
    """The query of a gauge (one row per group, column ``value`` in seconds), one meaning each;
    the Grafana rules and any evaluator reading stored rows use it. Both read the window rows
    (every partition, every worker). ``now`` is the evaluation time (SQL), ``where`` extra
    conditions (`` AND ...``).

    - ``silence_s``: seconds from the newest event time stored for the group (``max_ts`` of
      its window rows, over the last day) to now; no row in a day = no value.
    - ``pipeline_lag_s``: per insert of window rows (one ``written_at``), the time from its
      newest event to the write; the worst insert written in the last ``window_s``. This is
      what the streaming detector samples per drained batch.
    """
    dims = ", ".join(group_by)
    sel = f"{dims}, " if dims else ""
    group = f"\nGROUP BY {dims}" if dims else ""
    if name == "silence_s":
        return (f"SELECT {sel}toFloat64(dateDiff('millisecond', max(max_ts), {now})) / 1000 AS value\n"
                f"FROM {db}.metrics_window\nWHERE window_start >= {now} - INTERVAL 1 DAY AND max_ts <= {now}{where}"
                f"{group}\nHAVING count() > 0")
    if name == "pipeline_lag_s":
        return (f"SELECT {sel}toFloat64(max(lag_ms)) / 1000 AS value\nFROM (\n"
                f"  SELECT {sel}written_at, dateDiff('millisecond', max(max_ts), written_at) AS lag_ms\n"
                f"  FROM {db}.metrics_window\n  WHERE written_at >= {now} - INTERVAL {window_s} SECOND"
                f" AND written_at <= {now}{where}\n  GROUP BY {sel}written_at\n)"
                f"{group}\nHAVING count() > 0")
    raise ValueError(f"{name!r} is not a gauge; gauges: silence_s, pipeline_lag_s")


def _f(name, kind, unit, bad, description, **kw) -> Figure:
    return Figure(name, kind, unit, bad, description, **kw)


R = ("requests",)
_ratio = dict(kind="ratio", unit="ratio")
_LIST: list[Figure] = [
    _f("requests", "count", "requests", None, "non-shadow interactions", numerator=R, volume=R),
    _f("requests_per_s", "rate", "req/s", None, "requests per second of the range", numerator=R, volume=R),
    _f("errors", "count", "requests", "high", "errors and timeouts", numerator=("errors",), volume=R),
    _f("error_rate", **_ratio, bad="high", description="errors and timeouts per request",
       numerator=("errors",), denominator=R, volume=R),
    _f("availability", **_ratio, bad="low", description="1 - error rate", numerator=("errors",),
       denominator=R, complement=True, volume=R),
    _f("error_budget_burn", **_ratio, bad="high",
       description="error rate / (1 - slo_target): 1 spends the budget exactly over the SLO period",
       numerator=("errors",), denominator=R, volume=R),
    _f("timeout_rate", **_ratio, bad="high", description="timeouts per request", numerator=("timeouts",),
       denominator=R, volume=R),
    _f("fallbacks", "count", "requests", "high", "requests served by a fallback", numerator=("fallbacks",), volume=R),
    _f("fallback_rate", **_ratio, bad="high", description="requests served by a fallback",
       numerator=("fallbacks",), denominator=R, volume=R),
    _f("escalations", "count", "requests", "high", "requests escalated to a human",
       numerator=("escalations",), volume=R),
    _f("escalation_rate", **_ratio, bad="high", description="requests escalated to a human",
       numerator=("escalations",), denominator=R, volume=R),
    _f("refusal_rate", **_ratio, bad="high", description="requests the model refused",
       numerator=("refused",), denominator=R, volume=R),
    _f("rejected_input_rate", **_ratio, bad="high", description="inputs rejected by validation",
       numerator=("rejected_input",), denominator=R, volume=R),
    _f("rejected_output_rate", **_ratio, bad="high", description="outputs rejected by validation",
       numerator=("rejected_output",), denominator=R, volume=R),
    _f("rejection_rate", **_ratio, bad="high", description="input or output rejected by validation",
       numerator=("rejected_input", "rejected_output"), denominator=R, volume=R),
    _f("low_confidence_rate", **_ratio, bad="high", description="answers below the confidence threshold",
       numerator=("low_confidence",), denominator=R, volume=R),
    _f("latency_mean_ms", "ratio", "ms", "high", "mean latency", numerator=("latency_sum_ms",),
       denominator=R, volume=R),
    *[_f(f"latency_{n}_ms", "quantile", "ms", "high", f"{n} latency (merged sketch, 1% accurate)",
         buckets="latency_buckets", q=q, volume=R) for n, q in QUANTILES.items()],
    *[_f(f"ttft_{n}_ms", "quantile", "ms", "high", f"{n} time to first token (merged sketch)",
         buckets="ttft_buckets", q=q, volume=("ttft_count",)) for n, q in QUANTILES.items()],
    _f("cost_usd", "count", "USD", "high", "known cost", numerator=("cost_usd",), volume=R),
    _f("cost_run_rate_usd_month", "rate", "USD/month", "high", "cost over the range scaled to 30 days",
       numerator=("cost_usd",), per_s=MONTH_S, volume=R),
    _f("cost_per_request_usd", "ratio", "USD", "high", "cost per request", numerator=("cost_usd",),
       denominator=R, volume=R),
    _f("cost_per_task_usd", "ratio", "USD", "high", "cost per completed task", numerator=("cost_usd",),
       denominator=("task_completed",), volume=("task_completed",)),
    _f("cost_missing", "count", "requests", None, "interactions without a cost", numerator=("cost_missing",),
       volume=R),
    _f("unpriced_requests", "count", "requests", "high",
       "interactions with tokens but no known price: cost is under-reported by these",
       numerator=("unpriced_requests",), volume=R),
    _f("unpriced_rate", **_ratio, bad="high", description="share of requests with tokens but no known price",
       numerator=("unpriced_requests",), denominator=R, volume=R),
    _f("input_tokens", "count", "tokens", None, "input tokens", numerator=("input_tokens",), volume=R),
    _f("output_tokens", "count", "tokens", None, "output tokens", numerator=("output_tokens",), volume=R),
    _f("users", "distinct", "users", None, "distinct users (exact up to 64-bit hash collisions)",
       numerator=("users",)),
    _f("satisfaction", **_ratio, bad="low", description="thumbs up / (up + down)", numerator=("feedback_up",),
       denominator=("feedback_up", "feedback_down"), volume=("feedback_up", "feedback_down")),
    _f("task_completion_rate", **_ratio, bad="low", description="tasks completed / (completed + failed)",
       numerator=("task_completed",), denominator=("task_completed", "task_failed"),
       volume=("task_completed", "task_failed")),
    _f("correction_rate", **_ratio, bad="high", description="human corrections per request",
       numerator=("corrections",), denominator=R, volume=R),
    _f("corrections", "count", "events", "high", "human corrections", numerator=("corrections",), volume=R),
    _f("feedback_volume", "count", "events", None, "feedback events of every type",
       numerator=("feedback_up", "feedback_down", "task_completed", "task_failed", "corrections")),
    _f("accuracy", **_ratio, bad="low", description="correct / evaluated against ground truth (not shadow)",
       numerator=("correct",), denominator=("evaluated",), volume=("evaluated",)),
    _f("evaluated", "count", "events", None, "evaluations with a verdict", numerator=("evaluated",)),
    _f("eval_score_mean", "ratio", "score", "low", "mean evaluation score", numerator=("eval_score_sum",),
       denominator=("eval_scored",), volume=("eval_scored",)),
    _f("shadow_pairs", "count", "events", None, "shadow comparisons", numerator=("shadow_pairs",)),
    _f("shadow_disagreement_rate", **_ratio, bad="high", description="shadow candidate disagreeing with production",
       numerator=("shadow_disagreements",), denominator=("shadow_pairs",), volume=("shadow_pairs",)),
    _f("rollout_stage", "max", "stage", None, "highest rollout stage seen", numerator=("rollout_stage",)),
    _f("user_spend_usd", "user_sum", "USD", "high", "one user's spend over the window (top spenders, spend_top_window)",
       numerator=("cost_usd",), volume=R),
    _f("silence_s", "gauge", "s", "high",
       "seconds from the newest event time stored for the group to the evaluation time"),
    _f("pipeline_lag_s", "gauge", "s", "high",
       "seconds from an event's time to the write of its window row (worst insert of the window)"),
]
FIGURES: dict[str, Figure] = {f.name: f for f in _LIST}


def _check() -> None:
    for f in _LIST:
        for c in f.numerator + f.denominator + f.volume + ((f.buckets,) if f.buckets else ()):
            if c not in COLUMNS:
                raise ValueError(f"figure {f.name} names {c!r}, which is not a window column")


_check()

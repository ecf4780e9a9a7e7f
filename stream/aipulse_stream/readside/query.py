"""Read merged metrics from the window rows (never from raw events).

    >>> rows = metrics_query(client, settings, ["feature"], start, end,      # doctest: +SKIP
    ...                      where={"model": ["gpt-4o"]})
    >>> rows[0]["feature"], rows[0]["latency_p99_ms"], rows[0]["error_rate"]  # doctest: +SKIP
    ('chat', 2140.3, 0.012)

A window row is counted when its ``window_start`` is in [start, end). The range is cut into
whole days (read from ``metrics_daily``), whole hours (``metrics_hourly``) and the ragged
ends (``metrics_window``); each table is read with FINAL (replayed rows replace, never add)
and everything is summed, sketch buckets by ``sumMap``, then quantiles are computed by the
SQL function ``aipulse_quantile`` (migration 002). The three tables hold the same sums for
the same windows, so the cut changes the cost of a query, never its answer
(tests/metrics/test_storage.py checks that).

:func:`metrics_sql` gives the SQL and its parameters, for dashboards and for people writing
their own queries; :func:`metrics_query` runs it and adds the rates.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, Sequence

from aipulse_catalog.columns import KEY_COLUMNS, SUM_COLUMNS
from aipulse_catalog.figures import FIGURES as CATALOG
from aipulse_catalog.figures import QUANTILES  # noqa: F401  (re-exported: readers name quantiles from it)

from ..config import Settings

DIMENSIONS = KEY_COLUMNS
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ROLLUP_MIN_GRAINS = 1  # read a rollup only for at least this many whole grains

# Summed columns, returned under their own names (the catalog's plain-sum columns).
SUM_FIGURES = SUM_COLUMNS
# Every figure of a result row, in the order the CLI prints them (stable names: --json). Each
# derived one (ratios, quantiles) is computed as the catalog (aipulse_catalog.figures) says.
FIGURES = (
    "requests", "errors", "error_rate", "fallbacks", "fallback_rate", "escalations",
    "escalation_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms",
    "ttft_p50_ms", "ttft_p95_ms", "cost_usd", "cost_missing", "unpriced_requests", "unpriced_rate",
    "input_tokens", "output_tokens",
    "users", "feedback_up", "feedback_down", "satisfaction", "task_completed", "task_failed",
    "task_completion_rate", "corrections", "correction_rate", "escalations_resolved",
    "evaluated", "correct", "accuracy", "eval_scored", "eval_score_mean", "shadow_pairs",
    "shadow_disagreements", "shadow_disagreement_rate", "timeouts", "refused",
    "rejected_input", "rejected_output", "low_confidence", "low_confidence_rate", "cached",
    "shadow_requests", "late", "orphaned",
)
# The catalog's ratios and quantiles among them: computed from the sums (ratios, in derive())
# or in SQL from the merged sketch (quantiles).
RATIOS = tuple(f for f in FIGURES if f in CATALOG and CATALOG[f].kind == "ratio")
QUANTILE_FIGURES = tuple(f for f in FIGURES if f in CATALOG and CATALOG[f].kind == "quantile")

# Everything a result row carries: FIGURES, then the remaining raw sums (for own rates), then
# the catalog's other ratios (a ratio added to the catalog appears here without an edit).
_MORE_RATIOS = tuple(f.name for f in CATALOG.values() if f.kind == "ratio" and not f.complement
                     and f.name not in FIGURES and f.name != "error_budget_burn")  # burn needs a rule's SLO
RATIOS += _MORE_RATIOS
ALL_FIGURES = FIGURES + tuple(f for f in SUM_FIGURES if f not in FIGURES) + _MORE_RATIOS


class QueryError(ValueError):
    """A bad group-by, filter or range; the message says what is allowed."""


def _as_utc(t: datetime | float | int) -> datetime:
    if isinstance(t, datetime):
        return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(t), timezone.utc)


def _ceil(t: datetime, grain: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    n = -((epoch - t) // grain)  # ceil division on timedeltas
    return epoch + n * grain


def _floor(t: datetime, grain: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((t - epoch) // grain) * grain


def plan_segments(start: datetime, end: datetime, grain: str = "auto") -> list[tuple[str, datetime, datetime]]:
    """Cut [start, end) into (table, from, to) pieces: whole days, whole hours, the rest.

    ``grain``: "auto" (cheapest exact plan), or "window" to read only the base table.
    """
    if end <= start:
        return []
    if grain == "window":
        return [("metrics_window", start, end)]
    if grain != "auto":
        raise QueryError(f"grain must be 'auto' or 'window', not {grain!r}")
    out: list[tuple[str, datetime, datetime]] = []

    def hours(a: datetime, b: datetime) -> None:
        h0, h1 = _ceil(a, HOUR), _floor(b, HOUR)
        if h1 - h0 >= ROLLUP_MIN_GRAINS * HOUR:
            if a < h0:
                out.append(("metrics_window", a, h0))
            out.append(("metrics_hourly", h0, h1))
            if h1 < b:
                out.append(("metrics_window", h1, b))
        elif a < b:
            out.append(("metrics_window", a, b))

    d0, d1 = _ceil(start, DAY), _floor(end, DAY)
    if d1 - d0 >= ROLLUP_MIN_GRAINS * DAY:
        hours(start, d0)
        out.append(("metrics_daily", d0, d1))
        hours(d1, end)
    else:
        hours(start, end)
    return out


def _check_dims(dims: Iterable[str], what: str) -> list[str]:
    dims = list(dims)
    for d in dims:
        if d not in DIMENSIONS:
            raise QueryError(f"{what} {d!r} is not a dimension; use {', '.join(DIMENSIONS)}")
    return dims


_ROW_COLUMNS = ", ".join(
    DIMENSIONS + SUM_FIGURES
    + ("latency_buckets", "ttft_buckets", "users")
)


def metrics_sql(settings: Settings, group_by: Sequence[str], start, end,
                where: Mapping[str, Sequence[str] | str] | None = None,
                grain: str = "auto") -> tuple[str, dict]:
    """The SQL (with clickhouse-connect ``{name:Type}`` parameters) of one metrics read.

    Result columns: the group-by dims, every name in ``SUM_FIGURES``, ``users``, and
    ``latency_p50_ms`` ... ``ttft_p95_ms`` (NaN for an empty sketch), plus ``rows``.
    """
    group_by = _check_dims(group_by, "group-by")
    if len(set(group_by)) != len(group_by):
        raise QueryError("group-by names a dimension twice")
    start, end = _as_utc(start), _as_utc(end)
    params: dict = {}
    filters = []
    for dim, values in (where or {}).items():
        _check_dims([dim], "filter")
        values = [values] if isinstance(values, str) else list(values)
        params[f"w_{dim}"] = values
        filters.append(f"{dim} IN {{w_{dim}:Array(String)}}")
    parts = []
    for i, (table, a, b) in enumerate(plan_segments(start, end, grain)):
        # window_start is whole seconds: [a, b) selects the same windows as [ceil a, ceil b).
        params[f"a{i}"], params[f"b{i}"] = (int(_ceil(t, SECOND).timestamp()) for t in (a, b))
        cond = [f"window_start >= toDateTime({{a{i}:Int64}}, 'UTC')",
                f"window_start < toDateTime({{b{i}:Int64}}, 'UTC')"] + filters
        parts.append(f"SELECT {_ROW_COLUMNS} FROM {settings.database}.{table} FINAL WHERE {' AND '.join(cond)}")
    if not parts:  # an empty range: a query that returns nothing, same columns
        parts.append(f"SELECT {_ROW_COLUMNS} FROM {settings.database}.metrics_window WHERE 0")
    sums = ",\n  ".join(f"sum({c}) AS {c}" for c in SUM_FIGURES)
    quantiles = ",\n  ".join(f"{CATALOG[f].sql()} AS {f}" for f in QUANTILE_FIGURES)
    dims = ", ".join(group_by)
    union = "\n  UNION ALL\n  ".join(parts)
    sql = (
        f"SELECT {dims + ', ' if dims else ''}{sums},\n  uniqExactArray(users) AS users,\n  {quantiles},\n"
        f"  count() AS rows\nFROM (\n  {union}\n)\n"
        + (f"GROUP BY {dims}\n" if dims else "")
        + "HAVING rows > 0\n"
        + (f"ORDER BY {dims}" if dims else "")
    )
    return sql, params


def derive(row: dict) -> dict:
    """Ratios from the sums, as the catalog defines them (None when the denominator is 0);
    NaN quantiles become None."""
    out = dict(row)
    for name in RATIOS:
        out[name] = CATALOG[name].value(row)
    for name in QUANTILE_FIGURES:
        v = row.get(name)
        if v is None or math.isnan(v):
            out[name] = None
    return out


def metrics_query(client, settings: Settings, group_by: Sequence[str], start, end,
                  where: Mapping[str, Sequence[str] | str] | None = None,
                  grain: str = "auto") -> list[dict]:
    """One dict per group: the group's dims under their names, then every name in
    ALL_FIGURES (FIGURES, then the remaining sums such as latency_sum_ms)."""
    sql, params = metrics_sql(settings, group_by, start, end, where, grain)
    result = client.query(sql, parameters=params)
    out = []
    for values in result.result_rows:
        row = derive(dict(zip(result.column_names, values)))
        out.append({**{d: row[d] for d in group_by}, **{f: row[f] for f in ALL_FIGURES}})
    return out

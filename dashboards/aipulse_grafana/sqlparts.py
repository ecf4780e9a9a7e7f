"""SQL building blocks of the dashboards: variable filters, the window-row source, figures.

Panels read the window rows (``metrics_window`` and its rollups, docs/metrics.md), never raw
events, except where the question needs a raw column (top users, prompt versions)::

    sql = metric_sql(["latency_p99_ms"], db="aipulse", by="feature", series=True)

The source reads each window exactly once, from the cheapest table that holds it whole:
a day's row of ``metrics_daily`` when the whole UTC day lies in the panel's range, else an
hour's row of ``metrics_hourly`` when the whole hour does, else the 10 s rows of
``metrics_window`` (the same cut as readside.query.plan_segments, written as a per-row
condition so Grafana's macros can drive it). Time series only use a rollup when the bucket
($__interval_s) is a whole number of its grains, or a 30 min bucket would get a whole hour.
Every table is read with FINAL: replayed rows replace, never add.
"""
from __future__ import annotations


from aipulse_catalog.columns import KEY_COLUMNS as DIMENSIONS
from aipulse_catalog.figures import FIGURES as CATALOG

# The plugin expands $__fromTime/$__toTime to toDateTime(<unix s>) and its $__timeFilter is
# inclusive at both ends; `E` makes the inclusive end exclusive for whole-grain checks.
F = "$__fromTime"
E = "addSeconds($__toTime, 1)"


def var_filter(dims=DIMENSIONS) -> str:
    """One condition per dashboard variable; "All" or an empty selection removes it.

    $__conditionalAll is expanded by the plugin's frontend before Grafana's template
    replacement; ${var:singlequote} renders 'a','b' for a multi-value selection.
    """
    return " AND ".join(f"$__conditionalAll({d} IN (${{{d}:singlequote}}), ${d})" for d in dims)


def source(db: str, series: bool, dims=DIMENSIONS, extra: str = "") -> str:
    """A subquery of window rows (all columns) covering the panel's range exactly once."""
    hour_ok = "$__interval_s % 3600 = 0" if series else "1"
    day_ok = "$__interval_s % 86400 = 0" if series else "1"
    hour_in = f"(toStartOfHour(window_start) >= {F} AND addHours(toStartOfHour(window_start), 1) <= {E})"
    day_in = f"(toStartOfDay(window_start) >= {F} AND addDays(toStartOfDay(window_start), 1) <= {E})"
    filt = var_filter(dims) if dims else "1"
    if extra:
        filt += f" AND {extra}"
    base = f"window_start >= {F} AND window_start < {E}"
    parts = [
        f"SELECT * FROM {db}.metrics_window FINAL WHERE {base} AND NOT ({hour_ok} AND {hour_in}) AND {filt}",
        f"SELECT * FROM {db}.metrics_hourly FINAL WHERE {hour_ok} AND {base} AND {hour_in}"
        f" AND NOT ({day_ok} AND {day_in}) AND {filt}",
        f"SELECT * FROM {db}.metrics_daily FINAL WHERE {day_ok} AND {base} AND {day_in} AND {filt}",
    ]
    # alias w: figures name their columns w.x, because a figure's alias (requests) would
    # otherwise shadow the column inside the next figure's aggregate (ILLEGAL_AGGREGATION)
    return "(\n    " + "\n    UNION ALL\n    ".join(parts) + "\n  ) AS w"


# The length in seconds a rate figure is divided by: the bucket for per-second rates (a series
# point), the panel's whole range otherwise (the plugin's range is inclusive: + 1 s).
RANGE_S = "(toUnixTimestamp($__toTime) + 1 - toUnixTimestamp($__fromTime))"
DURATION_S = {"requests_per_s": "$__interval_s"}

# Figure name -> aggregate expression over window rows (alias w, see ``source``): every
# window-row figure of the catalog (aipulse_catalog.figures), under the catalog's name.
FIGURES: dict[str, str] = {
    f.name: f.sql("w.", DURATION_S.get(f.name, RANGE_S))
    for f in CATALOG.values() if f.kind not in ("gauge", "user_sum")
}


def metric_sql(figures: list[str], db: str, by: str | None = None, series: bool = False,
               extra: str = "", order: str | None = None, limit: int | None = None) -> str:
    """SELECT [time,] [by,] figures FROM the window rows of the panel's range.

    ``series``: one row per $__interval bucket (column ``time``), ordered by time, for
    format=time series; ``by``: a dimension whose values become series or table rows.
    """
    cols = []
    group = []
    if series:
        cols.append("$__timeInterval(window_start) AS time")
        group.append("time")
    if by:
        cols.append(by)
        group.append(by)
    cols += [f"{FIGURES[f]} AS {f}" for f in figures]
    sql = "SELECT " + ",\n  ".join(cols) + f"\nFROM {source(db, series, extra=extra)}"
    if group:
        sql += "\nGROUP BY " + ", ".join(group)
    if not series and not by:
        sql += "\nHAVING count() > 0"  # an empty range shows "No data", not zeros
    order = order or ("time" if series else by)
    if order:
        sql += f"\nORDER BY {order}"
    if limit:
        sql += f"\nLIMIT {limit}"
    return sql


def raw_filter(dims=DIMENSIONS) -> str:
    """Variable filter plus the panel's range for the raw ``interactions`` table."""
    return f"$__timeFilter(ts) AND NOT shadow AND {var_filter(dims)}"


def _alert_dim(d: str) -> str:
    """An alert's dimension: its group's column, else a rule label of that name, else ''."""
    return f"if({d} != '', {d}, labels['{d}'])"


def alert_annotation_sql(db: str, dims=DIMENSIONS) -> str:
    """Alerts of the streaming detector as annotation regions (the ``alerts`` table, migration 003).

    One row per alert (``alert_id``; its firing and resolved rows share it, a re-sent twin
    counts once): ``time`` = when it fired, ``timeEnd`` = when it resolved, or the range's end
    while it still fires; ``title``, ``text`` (summary and runbook), ``tags`` = "severity,rule"
    (Grafana splits tags on commas). An alert is shown when it overlaps the range and, per
    dashboard variable, when it does not carry that dimension ('' in the IN list) or carries
    a selected value: a service-wide alert stays visible when one feature is selected.
    """
    filt = "\n  AND ".join(f"$__conditionalAll({_alert_dim(d)} IN ('', ${{{d}:singlequote}}), ${d})" for d in dims)
    resolved = "countIf(status = 'resolved') > 0"
    return (
        "SELECT\n"
        "  min(starts_at) AS time,\n"
        f"  if({resolved}, maxIf(coalesce(ends_at, at), status = 'resolved'),"
        f" toDateTime64($__toTime, 3, 'UTC')) AS timeEnd,\n"
        f"  concat(any(rule), if({resolved}, ' (resolved)', ' (firing)')) AS title,\n"
        "  concat(argMin(summary, at), if(argMin(runbook, at) != '', concat(' - Runbook: ', argMin(runbook, at)), ''))"
        " AS text,\n"
        "  concat(any(severity), ',', any(rule)) AS tags\n"
        f"FROM {db}.alerts\n"
        f"WHERE starts_at <= $__toTime\n  AND {filt}\n"
        "GROUP BY alert_id\n"
        "HAVING timeEnd >= $__fromTime\n"
        "ORDER BY time, alert_id"
    )

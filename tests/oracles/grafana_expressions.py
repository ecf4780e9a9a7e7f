"""Grafana server-side expressions, as its docs define them, to evaluate alert rules in tests.

    results = frames_from_rows(columns, rows)           # step A's answer -> labelled values
    states = evaluate(rule_json, results)              # {labels: True (firing) / False}

- Query results: a table-format SQL answer is "numeric data": each row is one number whose
  labels are the row's string columns (one numeric column allowed). A time series is a
  list of (time, value) per label set.
- Reduce (last, mean, max, min, sum, count, median) over a series; a number passes through.
  Modes: strict (default: any NaN/null gives NaN for the arithmetic reducers), ``dropNN``
  (drop NaN, +-Inf and null first), ``replaceNN`` (replace them with ``replaceWithValue``).
  On an empty series: sum 0, count 0, the others NaN.
- Threshold: gt, lt, within_range (a < x < b), outside_range (x < a or x > b); NaN compares
  false, so it never fires. A rule with no series at all is NoData (its noDataState decides).
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence

Labels = tuple[tuple[str, str], ...]


def frames_from_rows(columns: Sequence[str], rows: Sequence[Sequence], value: str | None = None
                     ) -> dict[Labels, float | list[float]]:
    """Table rows -> {labels: number}; string columns are labels, the numeric column the value."""
    out: dict[Labels, float] = {}
    for row in rows:
        labels = tuple((c, v) for c, v in zip(columns, row) if isinstance(v, str))
        nums = [(c, v) for c, v in zip(columns, row) if not isinstance(v, str)]
        if value:
            nums = [(c, v) for c, v in nums if c == value]
        if len(nums) != 1:
            raise ValueError(f"alert query rows need exactly one numeric column, got {nums}")
        if labels in out:
            raise ValueError(f"duplicate labels {labels}: Grafana rejects the result")
        v = nums[0][1]
        out[labels] = math.nan if v is None else float(v)
    return out


def _clean(values, mode: str | None, replace_with: float | None):
    vals = [math.nan if v is None else float(v) for v in values]
    if mode == "dropNN":
        return [v for v in vals if math.isfinite(v)]
    if mode == "replaceNN":
        return [v if math.isfinite(v) else float(replace_with) for v in vals]
    return vals


def reduce(values: float | Sequence[float], reducer: str, mode: str | None = None,
           replace_with: float | None = None) -> float:
    if not isinstance(values, (list, tuple)):
        return math.nan if values is None else float(values)  # a number passes through
    vals = _clean(values, mode, replace_with)
    if reducer == "count":
        return float(len(vals))
    if reducer == "sum":
        return float(sum(vals))
    if not vals:
        return math.nan
    if reducer == "last":
        return vals[-1]
    if any(math.isnan(v) for v in vals):
        return math.nan
    return {"mean": lambda: sum(vals) / len(vals), "max": lambda: max(vals), "min": lambda: min(vals),
            "median": lambda: statistics.median(vals)}[reducer]()


def threshold(x: float, evaluator: str, params: Sequence[float]) -> bool:
    if evaluator == "gt":
        return x > params[0]
    if evaluator == "lt":
        return x < params[0]
    if evaluator == "within_range":
        return params[0] < x < params[1]
    if evaluator == "outside_range":
        return x < params[0] or x > params[1]
    raise ValueError(f"unknown threshold evaluator {evaluator}")


def evaluate(rule: dict, query_results: dict[Labels, float | list[float]]) -> dict[Labels, bool] | str:
    """Run the rule's reduce and threshold steps on step A's result.

    Returns {labels: firing?}, or the rule's noDataState when A returned no series.
    """
    steps = {d["refId"]: d["model"] for d in rule["data"]}
    if not query_results:
        return rule.get("noDataState", "NoData")
    values: dict[str, dict] = {"A": dict(query_results)}
    order = [r for r in steps if steps[r].get("type") in ("reduce", "threshold")]
    for ref in order:
        m = steps[ref]
        src = values[m["expression"].lstrip("$")]
        if m["type"] == "reduce":
            s = m.get("settings") or {}
            values[ref] = {k: reduce(v, m["reducer"], s.get("mode"), s.get("replaceWithValue")) for k, v in src.items()}
        else:
            ev = m["conditions"][0]["evaluator"]
            values[ref] = {k: threshold(v, ev["type"], ev["params"]) for k, v in src.items()}
    return values[rule["condition"]]

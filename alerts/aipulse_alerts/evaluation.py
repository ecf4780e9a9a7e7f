"""Evaluation: a rule's value, volume and verdict per group at one evaluation time.

    results = rule_results(rule, t_ms, now, store, hysteresis, gauges, spend)
    # group tuple -> (breach, value, threshold, baseline, group labels)

Window rules read summed windows from the :class:`~aipulse_alerts.contributions.WindowStore`:
the rule's window [t - window, t), its short window, its trailing baseline before it, or a
sibling variant (canary vs control). A group with less than ``min_volume`` in the window does
not breach (an alert whose traffic vanished resolves). Gauges (silence, pipeline lag) are
judged on the current :class:`Gauges`; per-user spend on a ``spend(start_ms, end_ms)`` source.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from aipulse_catalog.sketch import quantile_from_buckets

from .contributions import Agg, WindowStore
from .hysteresis import Hysteresis
from .rules import METRICS, MONTH_S, WINDOW_DIMENSIONS, Metric, Rule

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}
SpendSource = Callable[[int, int], list[tuple[str, str, float]]]  # (start, end) -> (service, user, cost)


@dataclass
class Gauges:
    """What the gauge rules read, refreshed by the evaluator at every tick."""

    newest_ts_ms: dict[str, int] = field(default_factory=dict)  # service ("" = any) -> newest event time
    lag_samples: list[tuple[float, float]] = field(default_factory=list)  # (at s, lag s)


def metric_value(rule: Rule, agg: Agg, window_s: int) -> tuple[float | None, float]:
    """(value, volume) of the rule's metric on summed columns; value None when undefined."""
    d = METRICS[rule.metric]
    volume = agg.sum(d.volume) if d.volume else 0.0
    if d.kind == "ratio":
        den = agg.sum(d.denominator)
        if den <= 0:
            return None, volume
        value = agg.sum(d.numerator) / den
        if rule.metric == Metric.error_budget_burn:
            value /= 1.0 - rule.slo_target
        return value, volume
    if d.kind == "quantile":
        buckets = agg.latency if d.buckets == "latency_buckets" else agg.ttft
        q = quantile_from_buckets(buckets, d.q) if buckets else math.nan
        return (None if math.isnan(q) else q), volume
    if d.kind == "run_rate":
        return agg.sum(d.numerator) * MONTH_S / window_s, volume
    if d.kind == "sum":
        return agg.sum(d.numerator), volume
    raise ValueError(f"{rule.metric.value} is not computed from window rows")


def rule_results(rule: Rule, t: int, now: float, store: WindowStore, hyst: Hysteresis,
                 gauges: Gauges, spend: SpendSource | None) -> dict[tuple, tuple]:
    """group -> (breach, value, threshold, baseline, labels dict) for one rule at t."""
    kind = METRICS[rule.metric].kind
    if kind == "gauge":
        return _gauge_results(rule, now, gauges, hyst)
    if rule.metric == Metric.user_spend_usd:
        return _spend_results(rule, t, spend, hyst) if spend is not None else {}
    dims = rule.group_by
    variant_base = rule.baseline is not None and rule.baseline.kind == "variant"
    where = {k: set(v) for k, v in rule.where.items()}
    pre = {k: v for k, v in where.items() if not (variant_base and k == "variant")}
    pos = [WINDOW_DIMENSIONS.index(d) for d in dims]
    pre_pos = [(WINDOW_DIMENSIONS.index(k), allowed) for k, allowed in pre.items()]

    def project(key):
        for i, allowed in pre_pos:
            if key[i] not in allowed:
                return None
        return tuple(key[i] for i in pos)

    sketches = kind == "quantile"
    win = rule.window_s * 1000
    cur = store.sum(t - win, t, project, sketches)
    short = store.sum(t - rule.short_window_s * 1000, t, project, sketches) if rule.short_window_s else None
    base = None
    if rule.baseline is not None and rule.baseline.kind == "trailing":
        base = store.sum(t - win - rule.baseline.window_s * 1000, t - win, project, sketches)
    results = {}
    for g in set(cur) | hyst.groups(rule.name):
        group = dict(zip(dims, g))
        if variant_base and "variant" in where and group.get("variant") not in where["variant"]:
            continue
        results[g] = _judge(rule, g, group, cur, short, base, dims, hyst)
    return results


def _judge(rule: Rule, g: tuple, group: dict, cur, short, base, dims, hyst: Hysteresis) -> tuple:
    op = OPS[rule.comparison]
    w_s = rule.window_s
    a = cur.get(g)
    if a is None:
        return (False, None, None, None, group)
    value, volume = metric_value(rule, a, w_s)
    threshold = rule.threshold_for(group)
    if value is None or volume < rule.min_volume:
        return (False, value, threshold, None, group)
    ok = threshold is None or op(value, threshold)
    baseline = None
    if rule.baseline is not None:
        b = rule.baseline
        state = hyst.get(rule.name, g)
        if state is not None and state.firing_since is not None and state.frozen_baseline is not None:
            baseline = state.frozen_baseline
        else:
            if b.kind == "trailing":
                ba = base.get(g) if base else None
                bw = b.window_s
            else:
                sib = tuple(b.variant if d == "variant" else x for d, x in zip(dims, g))
                ba = cur.get(sib)
                bw = w_s
            if ba is not None:
                bv, bvol = metric_value(rule, ba, bw)
                need = rule.min_volume if b.min_volume is None else b.min_volume
                if bv is not None and bvol >= need:
                    baseline = bv
        if baseline is None:
            ok = False
        else:
            ok = ok and op(value, b.factor * baseline) and abs(value - baseline) >= b.min_delta
    if ok and short is not None:
        sa = short.get(g)
        sv, svol = metric_value(rule, sa, rule.short_window_s) if sa is not None else (None, 0)
        # The short window needs volume too, scaled to its length.
        need = rule.min_volume * rule.short_window_s / w_s
        ok = sv is not None and svol >= need and (threshold is None or op(sv, threshold))
    return (ok, value, threshold, baseline, group)


def _gauge_results(rule: Rule, now: float, gauges: Gauges, hyst: Hysteresis) -> dict[tuple, tuple]:
    op = OPS[rule.comparison]
    out = {}
    if rule.metric == Metric.silence_s:
        seen = gauges.newest_ts_ms
        if rule.group_by:
            items = [((s,), {"service": s}, t) for s, t in seen.items() if s]
        else:
            items = [((), {}, seen[""])] if "" in seen else []
        for g, group, t in items:
            if rule.where.get("service") and group.get("service") not in rule.where["service"]:
                continue
            value = now - t / 1000
            out[g] = (op(value, rule.threshold), value, rule.threshold, None, group)
    else:  # pipeline_lag_s: the worst lag sample of the window; no sample: held
        since = now - rule.window_s
        samples = [lag for at, lag in gauges.lag_samples if at >= since]
        if samples:
            value = max(samples)
            out[()] = (op(value, rule.threshold), value, rule.threshold, None, {})
    return out


def _spend_results(rule: Rule, t: int, spend: SpendSource, hyst: Hysteresis) -> dict[tuple, tuple]:
    op = OPS[rule.comparison]
    firing = hyst.groups(rule.name)
    out = {}
    for service, user, total in spend(t - rule.window_s * 1000, t):
        if rule.where.get("service") and service not in rule.where["service"]:
            continue
        group = {"service": service, "user_id": user}
        g = tuple(group[d] for d in rule.group_by)
        prev = out.get(g)
        if prev is not None:  # group_by without service: add up services
            total += prev[1]
        threshold = rule.threshold_for(group)
        out[g] = (op(total, threshold), total, threshold, None, {d: group[d] for d in rule.group_by})
    for g in firing - out.keys():  # below the read floor: not breaching
        out[g] = (False, 0.0, rule.threshold, None, dict(zip(rule.group_by, g)))
    return out

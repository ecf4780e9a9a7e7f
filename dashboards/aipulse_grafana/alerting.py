"""Grafana alert provisioning generated from the rule file (alerts/aipulse_alerts/rules.yaml).

    from aipulse_grafana.alerting import alert_rules, contact_points, policies
    rules_yaml_dict = alert_rules(load_rules(), db="aipulse")

Each rule becomes one Grafana rule with three steps, the shape Grafana's own editor makes:

- ``A``: a ClickHouse query (table format) returning one row per group of ``group_by``
  (string columns become the alert's labels) and one number. Groups under the rule's
  ``min_volume`` (and, for baselines, under the baseline's volume or ``min_delta``) return no
  row, so they can never fire. What the number is:
  plain threshold -> the metric; ``short_window`` -> the metric over both windows combined
  with least()/greatest() so that both must breach; ``baseline`` -> metric / baseline (the
  ratio Grafana compares with ``factor``; the absolute threshold is then a floor in SQL);
  ``threshold_overrides`` -> metric / the group's threshold (compared with 1).
- ``B``: reduce ``last`` (mode dropNN) of A: a number passes through unchanged.
- ``C``: threshold ``gt``/``lt`` on B: the rule's condition.

The pending period (``for``) is ``sustain`` rounded up to the evaluation interval (1 min);
``resolve_after`` has no exact Grafana equivalent before keep_firing_for, and the streaming
detector (which fires within seconds) is the one that applies it. Windows end at the
evaluation time ($__toTime, the rule's relative range ends at 0).
"""
from __future__ import annotations

import math
import re

from aipulse_alerts.rules import Metric, Rule, RuleSet, format_duration
from aipulse_catalog.figures import gauge_sql
from aipulse_stream.readside.spend_top import DIMENSIONS as SPEND_DIMENSIONS
from aipulse_stream.readside.spend_top import spend_sql

from .chquery import TABLE
from .datasources import ALERTMANAGER_UID, CLICKHOUSE_REF, CLICKHOUSE_UID

FOLDER_UID, FOLDER = "aipulse", "aipulse"
INTERVAL_S = 60
DASHBOARD_OF = {  # where a rule's annotation links to
    "latency": "aipulse-latency", "ttft": "aipulse-latency", "error": "aipulse-reliability",
    "fallback": "aipulse-reliability", "escalation": "aipulse-reliability", "rejection": "aipulse-reliability",
    "low_confidence": "aipulse-reliability", "cost": "aipulse-cost", "user_spend": "aipulse-cost",
    "unpriced": "aipulse-cost",
    "satisfaction": "aipulse-quality", "task": "aipulse-quality", "accuracy": "aipulse-quality",
    "shadow": "aipulse-rollout", "silence": "aipulse-pipeline", "pipeline": "aipulse-pipeline",
}


def dashboard_for(rule: Rule) -> str:
    if rule.baseline is not None and rule.baseline.kind == "variant":
        return "aipulse-rollout"
    for prefix, uid in DASHBOARD_OF.items():
        if rule.metric.value.startswith(prefix):
            return uid
    return "aipulse-overview"


def _sum(cols) -> str:
    return " + ".join(f"sum({c})" for c in cols) or "0"


def metric_expr(rule: Rule, window_s: int) -> str:
    """The rule's metric over window rows: the catalog figure's own SQL (aipulse_catalog)."""
    expr = rule.definition.figure.sql(duration_s=str(window_s))
    if rule.metric == Metric.error_budget_burn:
        return f"({expr}) / {1 - rule.slo_target:.10g}"
    return expr


def _where(rule: Rule, skip=()) -> str:
    conds = [f"{d} IN ({', '.join(_lit(v) for v in vals)})" for d, vals in rule.where.items() if d not in skip]
    return "".join(f" AND {c}" for c in conds)


def _lit(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _agg(rule: Rule, db: str, start_back: int, end_back: int, dims: list[str], skip_where=(),
         extra: str = "") -> str:
    """Per-group metric and volume over windows starting in [to - start_back, to - end_back)."""
    window_s = start_back - end_back
    cols = ", ".join(dims + [f"{metric_expr(rule, window_s)} AS value", f"{_sum(rule.definition.volume) if rule.definition.volume else '0'} AS volume"])
    return (f"SELECT {cols}\n    FROM {db}.metrics_window FINAL\n"
            f"    WHERE window_start >= $__toTime - INTERVAL {start_back} SECOND"
            f" AND window_start < $__toTime - INTERVAL {end_back} SECOND{_where(rule, skip_where)}{extra}"
            + (f"\n    GROUP BY {', '.join(dims)}" if dims else ""))


def _cmp(rule: Rule) -> str:
    return "<" if rule.comparison.startswith("<") else ">"


def rule_sql(rule: Rule, db: str) -> tuple[str, float, str]:
    """(SQL of step A, threshold of step C, evaluator type 'gt'/'lt')."""
    dims = list(rule.group_by)
    w = rule.window_s
    kind = rule.definition.kind
    evaluator = "lt" if _cmp(rule) == "<" else "gt"
    sel = ", ".join(dims)
    if rule.metric == Metric.user_spend_usd:
        # Merged top spenders (spend_top_window, readside/spend_top.py): the kept sum is a lower
        # bound of the user's spend (exact unless some row cut the user), so never a false alarm.
        others = [d for d in dims if d != "user_id"]
        if set(others) - set(SPEND_DIMENSIONS) or set(rule.where) - set(SPEND_DIMENSIONS):
            raise ValueError(f"rule {rule.name}: user_spend_usd groups and filters by "
                             f"{', '.join(SPEND_DIMENSIONS)} and user_id only (what spend_top_window keeps)")
        spend = spend_sql(db, f"window_start >= $__toTime - INTERVAL {w} SECOND AND window_start < $__toTime"
                              f"{_where(rule)}", by=others, min_requests=rule.min_volume)
        sql = f"SELECT {sel}, cost_usd AS value\nFROM (\n{spend}\n)"
        return sql, _threshold(rule.threshold, rule.comparison), evaluator
    if kind == "gauge":  # one meaning per gauge: the catalog's query (aipulse_catalog.figures.gauge_sql)
        sql = gauge_sql(rule.metric.value, db, w, tuple(dims), _where(rule))
        return sql, _threshold(rule.threshold, rule.comparison), evaluator
    cur = _agg(rule, db, w, 0, dims)
    ctes = [f"cur AS (\n    {cur}\n)"]
    conds = [f"cur.volume >= {rule.min_volume}"]
    value = "cur.value"
    joins = ""
    if rule.short_window_s:
        ctes.append(f"short AS (\n    {_agg(rule, db, rule.short_window_s, 0, dims)}\n)")
        joins += f"\nINNER JOIN short USING ({sel})" if dims else "\nCROSS JOIN short"
        value = f"{'least' if evaluator == 'gt' else 'greatest'}(cur.value, short.value)"
    threshold, b = rule.threshold, rule.baseline
    if b is not None:
        if b.kind == "trailing":
            bdims, base = dims, _agg(rule, db, w + b.window_s, w, dims)
        else:
            bdims = [d for d in dims if d != "variant"]
            base = _agg(rule, db, w, 0, bdims, skip_where=("variant",), extra=f" AND variant = {_lit(b.variant)}")
        ctes.append(f"base AS (\n    {base}\n)")
        joins += (f"\nINNER JOIN base USING ({', '.join(bdims)})" if bdims else "\nCROSS JOIN base")
        conds.append(f"base.volume >= {b.min_volume if b.min_volume is not None else rule.min_volume}")
        conds.append(f"abs({value} - base.value) >= {b.min_delta:g}")
        if threshold is not None:  # an absolute floor (or ceiling) the metric must also pass
            conds.append(f"{value} {rule.comparison} {threshold:g}")
        value = f"{value} / base.value"
        threshold = b.factor
    elif rule.threshold_overrides:
        cases = ", ".join(
            " AND ".join(f"{k} = {_lit(v)}" for k, v in o.match.items()) + f", {o.threshold:g}"
            for o in rule.threshold_overrides)
        value = f"{value} / multiIf({cases}, {rule.threshold:g})"
        threshold = 1.0
    sql = (f"WITH {', '.join(ctes)}\nSELECT {', '.join(f'cur.{d} AS {d}' for d in dims)}{', ' if dims else ''}"
           f"toFloat64({value}) AS value\nFROM cur{joins}\nWHERE {' AND '.join(conds)}"
           + (f"\nORDER BY {sel}" if dims else ""))
    return sql, _threshold(threshold, rule.comparison), evaluator


def _threshold(t: float, comparison: str) -> float:
    # Grafana's threshold has gt/lt only: x >= t is x > the float just below t.
    if comparison == ">=":
        return math.nextafter(t, -math.inf)
    if comparison == "<=":
        return math.nextafter(t, math.inf)
    return float(t)


def _template(text: str, rule: Rule) -> str:
    """Rule summary placeholders -> Grafana templating ($labels, $values)."""
    def sub(m):
        k = m.group(1)
        if k in rule.group_by:
            return "{{ $labels." + k + " }}"
        if k == "value":
            return "{{ humanize $values.B.Value }}" + (" (x baseline)" if rule.baseline else "")
        if k == "threshold":
            return f"{rule.threshold:g}" if rule.threshold is not None else "-"
        if k == "factor":
            return f"{rule.baseline.factor:g}" if rule.baseline else "-"
        if k == "baseline":
            return "its baseline"
        return m.group(0)

    return re.sub(r"\{(\w+)\}", sub, text)


def span_s(rule: Rule) -> int:
    if rule.metric == Metric.silence_s:
        return 86400
    return max(rule.span_s(), rule.window_s)


def grafana_rule(rule: Rule, db: str) -> dict:
    sql, threshold, evaluator = rule_sql(rule, db)
    sustain = rule.sustain_s
    pending = -(-sustain // INTERVAL_S) * INTERVAL_S

    board = dashboard_for(rule)
    annotations = {
        "summary": _template(rule.summary or rule.name, rule),
        "description": rule.runbook.strip(),
        "runbook": rule.runbook.strip(),
        "__dashboardUid__": board,
    }
    if rule.runbook_url:
        annotations["runbook_url"] = rule.runbook_url
    rel = {"from": span_s(rule), "to": 0}
    return {
        "uid": f"aipulse-{rule.name}"[:40],
        "title": rule.name,
        "condition": "C",
        "data": [
            {"refId": "A", "datasourceUid": CLICKHOUSE_UID, "relativeTimeRange": rel,
             "model": {"refId": "A", "editorType": "sql", "format": TABLE, "queryType": "table", "rawSql": sql,
                       "datasource": {"type": CLICKHOUSE_REF.type_val, "uid": CLICKHOUSE_UID},
                       "intervalMs": 1000, "maxDataPoints": 43200}},
            {"refId": "B", "datasourceUid": "__expr__", "relativeTimeRange": rel,
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                       "settings": {"mode": "dropNN"}, "datasource": {"type": "__expr__", "uid": "__expr__"}}},
            {"refId": "C", "datasourceUid": "__expr__", "relativeTimeRange": rel,
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": evaluator, "params": [threshold]}}],
                       "datasource": {"type": "__expr__", "uid": "__expr__"}}},
        ],
        "noDataState": "Alerting" if rule.metric == Metric.silence_s else "OK",
        "execErrState": "Error",
        "for": format_duration(pending) if pending else "0s",
        "annotations": annotations,
        "labels": {"severity": rule.severity.value, "rule": rule.name, "source": "grafana", **rule.labels},
        "isPaused": False,
    }


def alert_rules(rules: RuleSet, db: str = "aipulse") -> dict:
    """The alert rule provisioning file (apiVersion 1, one group per severity)."""
    groups = []
    for sev in ("critical", "warning", "info"):
        rs = [grafana_rule(r, db) for r in rules.enabled if r.severity.value == sev]
        if rs:
            groups.append({"orgId": 1, "name": f"aipulse-{sev}", "folder": FOLDER, "interval": f"{INTERVAL_S}s",
                           "rules": rs})
    return {"apiVersion": 1, "groups": groups}


def contact_points(webhook: bool = False, slack: bool = False) -> dict:
    """Alertmanager always; a webhook / Slack receiver when asked (URL from the environment)."""
    receivers = [{"orgId": 1, "name": "aipulse-alertmanager", "receivers": [
        {"uid": "aipulse-am", "type": "prometheus-alertmanager",
         # Alertmanager requires basic auth (docs/deploy.md): the same user and password as the datasource.
         "settings": {"url": "${AIPULSE_GRAFANA_ALERTMANAGER_URL}",
                      "basicAuthUser": "${AIPULSE_GRAFANA_ALERTMANAGER_USER}",
                      "basicAuthPassword": "${AIPULSE_GRAFANA_ALERTMANAGER_PASSWORD}"},
         "disableResolveMessage": False}]}]
    if webhook:
        receivers.append({"orgId": 1, "name": "aipulse-webhook", "receivers": [
            {"uid": "aipulse-webhook", "type": "webhook", "settings": {"url": "${AIPULSE_GRAFANA_WEBHOOK_URL}"}}]})
    if slack:
        receivers.append({"orgId": 1, "name": "aipulse-slack", "receivers": [
            {"uid": "aipulse-slack", "type": "slack", "settings": {"url": "${AIPULSE_GRAFANA_SLACK_WEBHOOK_URL}"}}]})
    return {"apiVersion": 1, "contactPoints": receivers}


def policies(webhook: bool = False, slack: bool = False) -> dict:
    """Route every aipulse alert to Alertmanager (it groups, silences and notifies) and to the extras."""
    routes = []
    extra = [n for n, on in (("aipulse-webhook", webhook), ("aipulse-slack", slack)) if on]
    for name in extra:
        routes.append({"receiver": name, "object_matchers": [["source", "=", "grafana"]], "continue": True})
    if extra:
        routes.append({"receiver": "aipulse-alertmanager", "object_matchers": [["source", "=", "grafana"]]})
    policy = {"orgId": 1, "receiver": "aipulse-alertmanager",
              "group_by": ["grafana_folder", "alertname", "service", "feature"],
              "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}
    if routes:
        policy["routes"] = routes
    return {"apiVersion": 1, "policies": [policy]}

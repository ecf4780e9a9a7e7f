"""Every generated Grafana alert rule, evaluated the way Grafana would, on healthy and degraded seeds.

One service per rule is degraded in the way the rule watches, only over the rule's last
window (its trailing baseline stays healthy); ``svc-healthy`` is never degraded. Step A runs
on the engine after the plugin's macro expansion (relative range ending at T), then B
(reduce) and C (threshold) run with Grafana's semantics (tests/oracles/grafana_expressions.py).
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from aipulse_alerts.rules import load_rules
from aipulse_grafana.alerting import alert_rules
from oracles.grafana_expressions import evaluate, frames_from_rows
from aipulse_grafana.plugin_macros import render
from seed import HEALTHY, generate, replace, store

pytestmark = pytest.mark.integration
T = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
RULES = load_rules()
GAUGES = {"pipeline_lag", "pipeline_silence"}


def degrade(name: str, k, variant: str):
    """The knobs that break rule `name` (applied during its last window only)."""
    cand = variant == "candidate"
    return {
        "latency_p95_ceiling": lambda: replace(k, latency_median_ms=4500),
        "latency_p99_ceiling": lambda: replace(k, latency_median_ms=4500),
        "latency_p95_regression": lambda: replace(k, latency_median_ms=900),
        "fallback_rate_surge": lambda: replace(k, fallback_p=0.3),
        "error_budget_fast_burn": lambda: replace(k, error_p=0.03),
        "error_budget_slow_burn": lambda: replace(k, error_p=0.02),
        "cost_run_rate_ceiling": lambda: replace(k, cost_usd=0.01),
        "user_spend_limit": lambda: replace(k, whale_cost=0.5),
        "unpriced_usage": lambda: replace(k, unpriced_p=0.05),
        "satisfaction_drop": lambda: replace(k, up_p=0.4),
        "accuracy_drop": lambda: replace(k, correct_p=0.5),
        "shadow_disagreement_high": lambda: replace(k, disagree_p=0.5),
        "canary_error_rate": lambda: replace(k, error_p=0.2) if cand else k,
        "canary_latency_p95": lambda: replace(k, latency_median_ms=900) if cand else k,
        "canary_satisfaction": lambda: replace(k, up_p=0.4) if cand else k,
    }[name]()


def rate(t: float) -> float:
    # busy for the last 35 min (short windows and 30 min baselines get volume), quiet before
    return 3.0 if t >= (T - timedelta(minutes=35)).timestamp() else 0.15


def stream(rng, service, degraded_rule=None, end=T):
    window = RULES.rule(degraded_rule).window_s if degraded_rule else 0
    cut = (T - timedelta(seconds=window)).timestamp()

    def knobs(t, variant):
        return degrade(degraded_rule, HEALTHY, variant) if degraded_rule and t >= cut else HEALTHY

    return generate(rng, service, T - timedelta(hours=7), end, rate, knobs)


@pytest.fixture(scope="module")
def dbs(gclient, new_db):
    rng = random.Random(11)
    main = new_db("alerts")
    events = stream(rng, "svc-healthy")
    for r in RULES.enabled:
        if r.name not in GAUGES:
            events += stream(rng, f"svc-{r.name}", r.name)
    store(gclient, main, events)
    silent = new_db("silent")  # nothing for the last 10 minutes
    store(gclient, silent, stream(rng, "svc-a", end=T - timedelta(minutes=10)))
    lagging = new_db("lagging")  # every event stored two minutes after it happened
    store(gclient, lagging, stream(rng, "svc-a"), lag_s=120)
    return {"main": main, "silent": silent, "lagging": lagging}


def grafana_rules(db):
    return {r["title"]: r for g in alert_rules(RULES, db)["groups"] for r in g["rules"]}


def run_rule(client, rule):
    a = next(d for d in rule["data"] if d["refId"] == "A")
    rel = a["relativeTimeRange"]
    sql = render(a["model"]["rawSql"], T - timedelta(seconds=rel["from"]), T - timedelta(seconds=rel["to"]),
                 a["model"].get("intervalMs", 1000) / 1000)
    res = client.query(sql)
    return evaluate(rule, frames_from_rows(res.column_names, res.result_rows))


def firing_services(states) -> set[str] | str:
    if isinstance(states, str):
        return states
    return {dict(labels).get("service", "*") for labels, firing in states.items() if firing}


@pytest.mark.parametrize("name", [r.name for r in RULES.enabled])
def test_rule_fires_on_degraded_and_stays_quiet_on_healthy(gclient, dbs, name):
    if name == "pipeline_silence":
        degraded_db, want = dbs["silent"], "*"
    elif name == "pipeline_lag":
        degraded_db, want = dbs["lagging"], "*"
    else:
        degraded_db, want = dbs["main"], f"svc-{name}"
    healthy = firing_services(run_rule(gclient, grafana_rules(dbs["main"])[name]))
    assert healthy in ("OK", set()) or "svc-healthy" not in healthy and name not in GAUGES, healthy
    degraded = firing_services(run_rule(gclient, grafana_rules(degraded_db)[name]))
    assert degraded != "OK" and (degraded == "Alerting" or want in degraded), f"{name} did not fire: {degraded}"


def test_silence_with_no_events_at_all_is_alerting(gclient, new_db):
    empty = new_db("empty")
    assert run_rule(gclient, grafana_rules(empty)["pipeline_silence"]) == "Alerting"
    assert run_rule(gclient, grafana_rules(empty)["latency_p99_ceiling"]) == "OK"


def test_reduce_and_threshold_semantics():
    from oracles.grafana_expressions import reduce, threshold

    nan = float("nan")
    assert reduce([1, nan, 3], "mean") != reduce([1, nan, 3], "mean")  # strict: NaN
    assert reduce([1, nan, 3], "mean", "dropNN") == 2
    assert reduce([1, None, 3], "max", "replaceNN", 10) == 10
    assert reduce([1, 2, nan], "last", "dropNN") == 2
    assert reduce([], "sum", "dropNN") == 0 and reduce([], "max", "dropNN") != reduce([], "max", "dropNN")
    assert reduce(4.0, "mean") == 4.0  # numbers pass through
    assert threshold(5, "gt", [4]) and not threshold(nan, "gt", [4]) and threshold(3, "lt", [4])
    assert threshold(5, "within_range", [4, 6]) and not threshold(6, "within_range", [4, 6])
    assert threshold(7, "outside_range", [4, 6]) and not threshold(5, "outside_range", [4, 6])

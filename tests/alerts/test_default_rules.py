"""Every rule of the default set (alerts/aipulse_alerts/rules.yaml): one scenario that fires it, one that keeps it quiet.

Synthetic window rows on a fake clock (alertsim.Sim), the detector on one rule at a time.
Healthy phases are noisy (counts and latencies vary window to window); the quiet test runs the
same length as the firing one, healthy throughout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pytest

from aipulse.contract import Interaction
from aipulse_alerts.rules import load_rules
from alertsim import Sim, binom, lognormal_latencies, noisy, row


@dataclass
class Scenario:
    rule: str
    healthy: Callable          # (ws, rng) -> rows
    degraded: Callable
    n_healthy: int             # windows before the degradation
    n_degraded: int            # windows of degradation within which it must fire
    labels: dict
    window_s: int = 10
    events_healthy: Callable | None = None
    events_degraded: Callable | None = None


def traffic(ws, rng, *, n=120, median=800, err=0.0005, fb=0.02, model="m-a", feature="chat", variant="",
            sigma=0.35, **extra):
    k = noisy(rng, n)
    return row(ws, feature=feature, model=model, variant=variant,
               latencies=lognormal_latencies(rng, k, median, sigma),
               errors=binom(rng, k, err), fallbacks=binom(rng, k, fb), **extra)


def feedback(ws, rng, *, up=0.8, n=40, feature="chat", model="m-a", variant=""):
    k = noisy(rng, n)
    u = binom(rng, k, up)
    return row(ws, feature=feature, model=model, variant=variant, feedback_up=u, feedback_down=k - u)


_OFFSETS = {"o": 0}  # one partition's offsets, shared by every event source of a test


def spend_events(users, per_user_usd):
    counter = _OFFSETS

    def fn(ws, rng):
        out = []
        for u in users:
            counter["o"] += 1
            out.append((0, counter["o"], Interaction(event_id=f"e{counter['o']}", ts=ws + 1, service="svc",
                                                     latency_ms=10, user_id=u, cost_usd=per_user_usd(u, rng))))
        return out

    return fn


USERS = [f"u{i}" for i in range(20)]

SCENARIOS = [
    Scenario("latency_p95_ceiling",
             lambda ws, r: [traffic(ws, r, median=800)],
             lambda ws, r: [traffic(ws, r, median=4000)], 12, 6, {"service": "svc", "feature": "chat"}),
    Scenario("latency_p99_ceiling",
             lambda ws, r: [traffic(ws, r, median=1000)],
             lambda ws, r: [traffic(ws, r, median=1000), traffic(ws, r, n=20, median=9000, model="m-b")],
             12, 4, {"service": "svc", "feature": "chat", "severity": "critical"}),
    Scenario("latency_p95_regression",   # latency x5 on one model
             lambda ws, r: [traffic(ws, r, median=600), traffic(ws, r, median=300, model="m-b")],
             lambda ws, r: [traffic(ws, r, median=3000), traffic(ws, r, median=300, model="m-b")],
             60, 4, {"service": "svc", "feature": "chat", "model": "m-a"}),
    Scenario("fallback_rate_surge",      # fallback rate 2% -> 30% on one model
             lambda ws, r: [traffic(ws, r, fb=0.02), traffic(ws, r, fb=0.02, model="m-b")],
             lambda ws, r: [traffic(ws, r, fb=0.30), traffic(ws, r, fb=0.02, model="m-b")],
             30, 4, {"service": "svc", "feature": "chat", "model": "m-a", "severity": "critical"}),
    Scenario("error_budget_fast_burn",   # 20% errors: 14.4x over 1h within minutes
             lambda ws, r: [traffic(ws, r, n=600, err=0.0005)],
             lambda ws, r: [traffic(ws, r, n=600, err=0.20)], 60, 8,
             {"service": "svc", "feature": "chat"}, window_s=60),
    Scenario("error_budget_slow_burn",   # 5% errors: 6x over 6h within the hour
             lambda ws, r: [traffic(ws, r, n=600, err=0.0005)],
             lambda ws, r: [traffic(ws, r, n=600, err=0.05)], 60, 60,
             {"service": "svc", "feature": "chat", "severity": "warning"}, window_s=60),
    Scenario("cost_run_rate_ceiling",    # 6 USD/h (4.3k/month) -> 30 USD/h (21.6k/month)
             lambda ws, r: [traffic(ws, r, n=100, cost_usd=0.1 * r.uniform(0.8, 1.2))],
             lambda ws, r: [traffic(ws, r, n=100, cost_usd=0.5)], 60, 40, {"service": "svc"}, window_s=60),
    Scenario("user_spend_limit",         # one user at 1 USD/min
             lambda ws, r: [], lambda ws, r: [], 30, 25, {"service": "svc", "user_id": "u3"}, window_s=60,
             events_healthy=spend_events(USERS, lambda u, r: r.uniform(0.001, 0.01)),
             events_degraded=spend_events(USERS, lambda u, r: 1.0 if u == "u3" else r.uniform(0.001, 0.01))),
    Scenario("unpriced_usage",           # a new model without a price: its calls carry tokens, no cost
             lambda ws, r: [traffic(ws, r, n=100, cost_usd=0.1)],
             lambda ws, r: [traffic(ws, r, n=100, cost_usd=0.1),
                            traffic(ws, r, n=20, model="m-new", unpriced_requests=r.randint(1, 5))],
             20, 3, {"service": "svc", "model": "m-new", "severity": "warning"}, window_s=60),
    Scenario("satisfaction_drop",
             lambda ws, r: [feedback(ws, r, up=0.8)], lambda ws, r: [feedback(ws, r, up=0.45)], 60, 12,
             {"service": "svc", "feature": "chat"}, window_s=60),
    Scenario("accuracy_drop",
             lambda ws, r: [row(ws, evaluated=(k := noisy(r, 30)), correct=binom(r, k, 0.92))],
             lambda ws, r: [row(ws, evaluated=(k := noisy(r, 30)), correct=binom(r, k, 0.70))], 60, 20,
             {"service": "svc", "feature": "chat", "model": "m-a"}, window_s=60),
    Scenario("shadow_disagreement_high",
             lambda ws, r: [row(ws, shadow_pairs=(k := noisy(r, 20)), shadow_disagreements=binom(r, k, 0.05))],
             lambda ws, r: [row(ws, shadow_pairs=(k := noisy(r, 20)), shadow_disagreements=binom(r, k, 0.4))],
             20, 25, {"service": "svc", "feature": "chat", "model": "m-a", "severity": "info"}, window_s=60),
    Scenario("canary_error_rate",
             lambda ws, r: [traffic(ws, r, n=60, err=0.01, variant="control"),
                            traffic(ws, r, n=60, err=0.01, variant="candidate")],
             lambda ws, r: [traffic(ws, r, n=60, err=0.01, variant="control"),
                            traffic(ws, r, n=60, err=0.10, variant="candidate")], 30, 20,
             {"service": "svc", "feature": "chat", "variant": "candidate"}),
    Scenario("canary_latency_p95",
             lambda ws, r: [traffic(ws, r, n=60, variant="control"), traffic(ws, r, n=60, variant="candidate")],
             lambda ws, r: [traffic(ws, r, n=60, variant="control"),
                            traffic(ws, r, n=60, median=1400, variant="candidate")], 30, 20,
             {"service": "svc", "feature": "chat", "variant": "candidate"}),
    Scenario("canary_satisfaction",
             lambda ws, r: [feedback(ws, r, n=20, variant="control"), feedback(ws, r, n=20, variant="candidate")],
             lambda ws, r: [feedback(ws, r, n=20, variant="control"),
                            feedback(ws, r, n=20, up=0.5, variant="candidate")], 20, 15,
             {"service": "svc", "feature": "chat", "variant": "candidate"}, window_s=60),
    Scenario("pipeline_lag",             # events processed 2 minutes after they happened
             lambda ws, r: [traffic(ws, r, max_ts=ws + 4)],
             lambda ws, r: [traffic(ws - 120, r, max_ts=ws - 116, block=1)], 12, 8, {"severity": "warning"}),
    Scenario("pipeline_silence",         # traffic stops
             lambda ws, r: [traffic(ws, r)], lambda ws, r: [], 12, 34, {"alertname": "pipeline_silence"}),
]


def test_every_default_rule_has_a_scenario():
    assert {s.rule for s in SCENARIOS} == {r.name for r in load_rules().rules}


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.rule)
def test_rule_fires_on_degradation(sc: Scenario):
    sim = Sim(sc.rule, window_s=sc.window_s)
    before = sim.run(sc.n_healthy, sc.healthy, sc.events_healthy)
    assert before == [], f"fired while healthy: {before}"
    for i in range(sc.n_degraded):
        sim.step(sc.degraded, sc.events_degraded)
        if sim.firing():
            break
    fired = sim.firing()
    assert len(fired) == 1, f"{sc.rule}: {len(fired)} firing alerts after {sc.n_degraded} degraded windows"
    a = fired[0]
    assert a.labels["alertname"] == sc.rule
    assert {k: a.labels.get(k) for k in sc.labels} == sc.labels | {}
    assert a.annotations["runbook"] and a.annotations["summary"]
    assert "{" not in a.annotations["summary"], a.annotations["summary"]
    print(f"{sc.rule}: fired after {i + 1} degraded windows of {sc.window_s}s: {a.annotations['summary']}")
    # It stays one alert while the degradation lasts.
    sim.run(5, sc.degraded, sc.events_degraded)
    assert len(sim.firing()) == 1 and not sim.resolved()


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.rule)
def test_rule_quiet_on_noisy_healthy_traffic(sc: Scenario):
    sim = Sim(sc.rule, window_s=sc.window_s, seed=99)
    out = sim.run(sc.n_healthy + sc.n_degraded + 5, sc.healthy, sc.events_healthy)
    assert out == [], f"{sc.rule} fired on healthy traffic: {out[:1]}"

"""Detector semantics on synthetic rows: merging contributions, hysteresis, baselines; loader and config."""
from __future__ import annotations

import pytest

from aipulse_alerts.amconfig import amtool, check, receivers_from_env, render
from aipulse_alerts.notify import am_payload
from aipulse_alerts.rules import RuleSet, RulesError, parse_rules
from alertsim import Sim, row

RULE = """
version: 1
rules:
  - name: errs
    metric: error_rate
    group_by: [service, model]
    threshold: 0.1
    window: {window}
    sustain: {sustain}
    resolve_after: {resolve}
    min_volume: 10
    severity: critical
    runbook: fix it
"""


def rules(window="10s", sustain="0s", resolve="20s") -> RuleSet:
    return parse_rules(RULE.format(window=window, sustain=sustain, resolve=resolve))


def test_partitions_and_blocks_add_but_re_emissions_and_replays_do_not():
    sim = Sim(rules=rules())
    ws = sim.ws

    def rows(_ws, _rng):
        return [
            row(ws, partition=0, block=0, version=5, requests=50, errors=2),
            row(ws, partition=0, block=0, version=9, requests=60, errors=3),    # grown: replaces
            row(ws, partition=0, block=0, version=9, requests=60, errors=3),    # replay: ignored
            row(ws, partition=0, block=0, version=7, requests=55, errors=2),    # older: ignored
            row(ws, partition=1, block=0, version=9, requests=30, errors=2),    # another partition: adds
            row(ws, partition=0, block=1, version=4000, requests=10, errors=1),  # next block: adds
        ]

    sim.step(rows)
    agg = sim.det.store.window(ws * 1000)[("svc", "chat", "m-a", "")]
    assert agg.sum(["requests"]) == 100 and agg.sum(["errors"]) == 6


def test_sustain_and_no_flapping():
    sim = Sim(rules=rules(sustain="20s"))
    bad = lambda ws, r: [row(ws, requests=100, errors=20)]
    good = lambda ws, r: [row(ws, requests=100, errors=1)]
    for _ in range(6):   # breach, ok, breach, ok...: never sustained for 20s
        sim.step(bad)
        sim.step(good)
    assert sim.alerts == []
    sim.run(2, bad)
    assert sim.alerts == []          # 10s of breach so far
    sim.step(bad)
    assert [a.status for a in sim.alerts] == ["firing"]


def test_one_alert_per_group_until_resolved_after_quiet_period():
    sim = Sim(rules=rules(resolve="30s"))
    bad = lambda ws, r: [row(ws, requests=100, errors=20), row(ws, model="m-b", requests=100, errors=30)]
    good = lambda ws, r: [row(ws, requests=100, errors=1), row(ws, model="m-b", requests=100, errors=1)]
    sim.run(5, bad)
    assert sorted(a.labels["model"] for a in sim.firing()) == ["m-a", "m-b"]
    sim.step(good)
    sim.step(good)
    sim.step(bad)                     # a blip inside the quiet period keeps it firing, no re-fire
    sim.run(2, good)
    assert len(sim.firing()) == 2 and not sim.resolved()
    sim.step(good)
    assert len(sim.resolved()) == 2
    first, last = sim.firing()[0], sim.resolved()[0]
    assert first.alert_id in {a.alert_id for a in sim.resolved()}
    assert last.ends_at > last.starts_at


def test_min_volume_keeps_a_tiny_group_quiet():
    sim = Sim(rules=rules())
    sim.run(5, lambda ws, r: [row(ws, requests=5, errors=5)])
    assert sim.alerts == []


def test_traffic_vanishing_resolves():
    sim = Sim(rules=rules(resolve="20s"))
    sim.run(2, lambda ws, r: [row(ws, requests=100, errors=50)])
    assert len(sim.firing()) == 1
    sim.run(3, lambda ws, r: [])
    assert len(sim.resolved()) == 1


def test_baseline_is_frozen_while_firing():
    from aipulse_alerts.rules import load_rules

    sim = Sim("fallback_rate_surge")
    sim.run(30, lambda ws, r: [row(ws, requests=200, fallbacks=4)])
    sim.run(3, lambda ws, r: [row(ws, requests=200, fallbacks=60)])
    assert len(sim.firing()) == 1
    # 40 minutes of 30%: a moving baseline would absorb it and resolve; the frozen one does not.
    sim.run(240, lambda ws, r: [row(ws, requests=200, fallbacks=60)])
    assert not sim.resolved()
    sim.run(20, lambda ws, r: [row(ws, requests=200, fallbacks=4)])
    assert len(sim.resolved()) == 1


def test_windows_must_be_multiples_of_the_base_window():
    with pytest.raises(ValueError, match="multiples"):
        Sim(rules=rules(window="15s"), window_s=10)


@pytest.mark.parametrize("text, message", [
    ("version: 1\nrules:\n - {name: a, metric: error_rate, window: 1m, runbook: r}", "threshold, a baseline"),
    ("version: 1\nrules:\n - {name: a, metric: error_budget_burn, threshold: 1, window: 1m, runbook: r}",
     "slo_target"),
    ("version: 1\nrules:\n - {name: a, metric: error_rate, group_by: [user_id], threshold: 1, window: 1m, "
     "runbook: r}", "user_id is only"),
    ("version: 1\nrules:\n - {name: a, metric: error_rate, threshold: 1, window: 1m, short_window: 2m, "
     "runbook: r}", "short_window"),
    ("version: 1\nrules:\n - {name: a, metric: error_rate, threshold: 1, window: 1m, runbook: r}\n"
     " - {name: a, metric: error_rate, threshold: 1, window: 1m, runbook: r}", "used twice"),
    ("version: 1\nrules:\n - {name: a, metric: latency_p99_ms, threshold: 1, window: 1m, runbook: r, "
     "labels: {service: x}}", "set by the detector"),
    ("rules: [", "not valid YAML"),
])
def test_loader_names_the_problem(text, message):
    with pytest.raises(RulesError, match=message):
        parse_rules(text)


def test_alertmanager_payload_shape():
    sim = Sim(rules=rules())
    sim.run(1, lambda ws, r: [row(ws, requests=100, errors=50)])
    a = sim.firing()[0]
    p = am_payload(a, now=sim.now)
    assert p["labels"] == {"alertname": "errs", "severity": "critical", "source": "aipulse-stream",
                           "service": "svc", "model": "m-a"}
    assert p["annotations"]["runbook"] == "fix it"
    assert p["startsAt"].endswith("Z") and p["endsAt"] > p["startsAt"]


@pytest.mark.skipif(amtool() is None, reason="amtool not installed (scripts/install-system-deps.sh)")
def test_generated_alertmanager_config_passes_amtool():
    env = {"AIPULSE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
           "AIPULSE_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/x",
           "AIPULSE_ALERT_SLACK_CHANNEL": "#ai-alerts",
           "AIPULSE_ALERT_EMAIL_TO": "oncall@example.com", "AIPULSE_ALERT_SMTP_SMARTHOST": "smtp.example.com:587"}
    assert "SUCCESS" in check(render(receivers_from_env(env)))
    assert "SUCCESS" in check(render(receivers_from_env({})))

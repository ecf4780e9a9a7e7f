"""The evaluator's state rules, on synthetic rows (pure logic; the real-stack proof is
test_one_evaluator.py): a stalled input holds, a resumed alert keeps its identity and is not
re-sent, a partition's completeness and lag come from its stored progress and end offset."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aipulse_alerts.evaluator import IDLE_TAIL_S, Evaluator
from aipulse_alerts.notify import Notifier
from aipulse_alerts.reading import Progress
from alertsim import Sim, row
from test_detector_semantics import rules

bad = lambda ws, r: [row(ws, requests=100, errors=50)]   # noqa: E731
good = lambda ws, r: [row(ws, requests=100, errors=1)]   # noqa: E731


def _firing_sim():
    sim = Sim(rules=rules(resolve="20s"))
    sim.run(2, bad)
    assert [a.status for a in sim.alerts] == ["firing"]
    return sim


def test_incomplete_windows_hold_the_state():
    sim = _firing_sim()
    held_at = sim.ws
    for _ in range(5):  # no rows and a partition stuck before the window: nothing is judged
        sim.ws += sim.W
        sim.now = sim.ws + 2
        assert sim.det.tick(sim.now, ready_ms=held_at * 1000) == []
    assert sim.det.firing(), "a held alert must stay firing"
    sim.det.replace([row(w, requests=100, errors=1) for w in range(held_at, sim.ws, sim.W)])
    out = sim.det.tick(sim.now)   # the input is back: the held windows are evaluated in order
    assert [a.status for a in out] == ["resolved"]


def test_a_resumed_alert_keeps_its_id_is_not_re_fired_and_resolves_after_a_quiet_period():
    sim = _firing_sim()
    fired = sim.alerts[0]
    stored = [{"rule": fired.rule, "alert_id": fired.alert_id, "group": fired.group,
               "starts_at_ms": int(fired.starts_at * 1000), "value": fired.value,
               "threshold": fired.threshold, "baseline": fired.baseline}]
    new = Sim(rules=rules(resolve="20s"))     # a restarted evaluator: empty memory
    new.now, new.ws = sim.now, sim.ws
    resumed = new.det.restore(stored, new.now)
    assert [a.alert_id for a in resumed] == [fired.alert_id] and resumed[0].labels == fired.labels
    new.det.replace([row(w, requests=100, errors=50) for w in range(sim.ws - 60, sim.ws, sim.W)])
    assert new.run(3, bad) == [], "still breaching: no second firing"
    assert new.run(1, good) == []             # quiet for less than resolve_after
    out = new.run(2, good)
    assert [(a.status, a.alert_id) for a in out] == [("resolved", fired.alert_id)]


def test_adopted_alerts_are_re_posted_but_not_re_sent():
    posted, rows = [], []
    n = Notifier("http://am.invalid", clickhouse=rows.extend, clock=lambda: 1000.0)
    n._write_am = lambda batch: posted.extend(batch)
    sim = _firing_sim()
    n.adopt(sim.alerts)
    n.resend_due()
    assert asyncio.run(n.flush(2.0))
    assert [a.alert_id for a, _ in posted] == [sim.alerts[0].alert_id]   # kept alive in Alertmanager
    assert rows == [], "a resumed alert is no new state change: no row, no topic message"


def _evaluator(ends: dict[int, int]) -> Evaluator:
    ev = Evaluator(SimpleNamespace(), rules(), notifier=None, election=None, connect=None)
    ev._end_offsets = lambda: ends
    return ev


def test_completeness_and_lag_come_from_the_least_advanced_partition():
    now = 1_800_000_100.0
    ev = _evaluator({0: 100, 1: 50, 2: 0})
    progress = {0: Progress(99, 1_800_000_099_000),      # all read: complete up to now
                1: Progress(40, 1_800_000_090_000)}      # 9 offsets unread, watermark 10 s ago
    ready, lag = ev._completeness(progress, now)           # partition 2: empty, complete
    assert ready == 1_800_000_090_000 and lag == 10.0


def test_a_replay_does_not_read_as_lag_and_an_unchanged_tail_stops_holding():
    now = 1_800_000_100.0
    ev = _evaluator({0: 100})
    # After a restart the worker rewrites offsets it had stored: the stored max offset and its
    # watermark (argMax by version) stay where they were, caught up: no lag.
    assert ev._completeness({0: Progress(99, 1_800_000_099_500)}, now) == (int(now * 1000), 0.0)
    # A tail that never counts (dead letters): holds at first, not after IDLE_TAIL_S.
    assert ev._completeness({0: Progress(97, 1_800_000_099_000)}, now)[0] == 1_800_000_099_000
    assert ev._completeness({0: Progress(97, 1_800_000_099_000)}, now + IDLE_TAIL_S)[0] == int((now + IDLE_TAIL_S) * 1000)

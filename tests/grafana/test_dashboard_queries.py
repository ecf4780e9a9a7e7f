"""Every ClickHouse query of every dashboard panel, run on the engine after the plugin's expansion.

The seed spans ~29 hours around a UTC midnight, so one range exercises the daily rollup, the
hourly rollup and the 10 s rows at both ragged ends; figures are compared with the exact
values recomputed from the seeded events (quantiles within the sketch's 1%).
"""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from aipulse_grafana.boards import all_boards
from aipulse_grafana.chquery import TIME_SERIES
from aipulse_grafana.plugin_macros import ALL, Variable, render
from seed import HEALTHY, exact_quantile, generate, interactions, replace, store

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
D0 = NOW.replace(hour=0) - timedelta(days=3)
START, END = D0 - timedelta(hours=2, minutes=30, seconds=7), D0 + timedelta(days=1, hours=1, minutes=30, seconds=3)
OPTIONS = {"service": ["svc-a", "svc-b"], "feature": ["chat", "search"], "model": ["claude", "gpt-4o"],
           "variant": ["candidate", "control"]}
SCENARIOS = {
    "all": {},
    "single": {"feature": "chat"},
    "multi": {"model": ["gpt-4o", "claude"], "variant": "candidate", "service": ["svc-b"]},
}


@pytest.fixture(scope="module")
def seeded(gclient, new_db):
    db = new_db("dash")
    rng = random.Random(5)
    events = []
    for svc in OPTIONS["service"]:
        events += generate(rng, svc, D0 - timedelta(hours=3), D0 + timedelta(days=1, hours=2), lambda t: 0.12,
                           lambda t, v: replace(HEALTHY, latency_median_ms=600 if v == "candidate" else 300,
                                                cost_usd=0.002, error_p=0.02, unpriced_p=0.03),
                           features=OPTIONS["feature"], models=OPTIONS["model"], users=30, prefix="d")
    store(gclient, db, events)
    return db, events


def variables(scenario: dict) -> list[Variable]:
    return [Variable(d, scenario.get(d, ALL), OPTIONS[d]) for d in OPTIONS]


def selected(events, scenario, start=START, end=END):
    where = {d: v for d, v in scenario.items()}
    lo, hi = math.ceil(start.timestamp()), math.floor(end.timestamp())  # windows start in [from, to]
    return [e for e in interactions(events, **where) if lo <= (int(e.ts.timestamp()) // 10) * 10 <= hi]


def boards(db):
    return all_boards(db)


def all_queries(db):
    for b in boards(db):
        for doc in b.docs:
            for q in doc.queries:
                yield b, doc, q


def run(client, sql):
    r = client.query(sql)
    return list(r.column_names), r.result_rows


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("interval_s", [60, 3600, 86400])
def test_every_panel_query_runs_and_returns_its_columns(gclient, seeded, scenario, interval_s):
    db, _ = seeded
    n = 0
    for b, doc, q in all_queries(db):
        sql = render(q.sql, START, END, interval_s, variables(SCENARIOS[scenario]))
        cols, rows = run(gclient, sql)
        assert cols == q.columns, f"{b.uid} / {doc.title}: {cols}"
        assert rows, f"{b.uid} / {doc.title} returned no rows for {scenario}"
        if q.format == TIME_SERIES:
            times = [r[0] for r in rows]
            assert times == sorted(times), f"{doc.title}: not ordered by time"
        n += 1
    assert n >= 40


def test_variable_queries_list_the_seeded_values(gclient, seeded):
    db, _ = seeded
    b = boards(db)[0]
    for dim, sql in b.variable_queries:
        _, rows = run(gclient, render(sql, START, END, 60, variables({})))
        assert sorted(r[0] for r in rows) == OPTIONS[dim]
    _, rows = run(gclient, render(b.variable_queries[1][1], START, END, 60, variables({"service": "svc-a"})))
    assert sorted(r[0] for r in rows) == OPTIONS["feature"]


def _panel(db, uid, title):
    for b in boards(db):
        for doc in b.docs:
            if b.uid == uid and doc.title == title:
                return doc.queries[0]
    raise KeyError(title)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_overview_numbers_equal_the_seed(gclient, seeded, scenario):
    db, events = seeded
    ev = selected(events, SCENARIOS[scenario])
    lat = [e.latency_ms for e in ev]
    vars_ = variables(SCENARIOS[scenario])

    def one(title, interval=60):
        cols, rows = run(gclient, render(_panel(db, "aipulse-overview", title).sql, START, END, interval, vars_))
        return dict(zip(cols, rows[0]))

    assert one("Requests")["requests"] == len(ev)
    errors = sum(e.outcome in ("error", "timeout") for e in ev)
    assert one("Availability")["availability"] == pytest.approx(1 - errors / len(ev), rel=1e-12)
    for title, q, col in (("P95 latency", 0.95, "latency_p95_ms"), ("P99 latency", 0.99, "latency_p99_ms")):
        want = exact_quantile(lat, q)
        got = one(title)[col]
        assert abs(got - want) <= 0.01 * want, f"{title}: {got} vs exact {want}"
    span = math.floor(END.timestamp()) + 1 - math.floor(START.timestamp())
    assert one("Monthly run-rate")["cost_run_rate_usd_month"] == pytest.approx(
        sum(e.cost_usd or 0 for e in ev) * 2592000 / span, rel=1e-9)
    # today = since midnight of the range's end
    today = [e for e in interactions(events, **SCENARIOS[scenario])
             if END.replace(hour=0, minute=0, second=0, microsecond=0) <= e.ts and int(e.ts.timestamp()) // 10 * 10 <= END.timestamp()]
    assert one("Cost today")["cost_usd"] == pytest.approx(sum(e.cost_usd or 0 for e in today), rel=1e-9)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_unpriced_panels_equal_the_seed(gclient, seeded, scenario):
    """Calls with tokens but no cost are counted, in total and per model, from any table."""
    db, events = seeded
    ev = selected(events, SCENARIOS[scenario])
    unpriced = [e for e in ev if e.cost_usd is None and (e.input_tokens or e.output_tokens)]
    assert unpriced and len(unpriced) < len(ev)
    vars_ = variables(SCENARIOS[scenario])
    cols, rows = run(gclient, render(_panel(db, "aipulse-cost", "Unpriced interactions").sql, START, END, 60, vars_))
    assert dict(zip(cols, rows[0]))["unpriced_requests"] == len(unpriced)
    cols, rows = run(gclient, render(_panel(db, "aipulse-cost", "Unpriced by model").sql, START, END, 60, vars_))
    got = {r[0]: dict(zip(cols, r)) for r in rows}
    want = {m: sum(e.model == m for e in unpriced) for m in {e.model for e in unpriced}}
    assert {m: g["unpriced_requests"] for m, g in got.items()} == want
    for m, g in got.items():
        assert g["unpriced_rate"] == pytest.approx(want[m] / sum(e.model == m for e in ev), rel=1e-12)


@pytest.mark.parametrize("interval_s", [60, 3600, 86400])
def test_time_series_buckets_add_up_whatever_table_is_read(gclient, seeded, interval_s):
    """Requests/s x interval summed over buckets = the seed's count, from 10 s rows or rollups."""
    db, events = seeded
    ev = selected(events, {})
    q = _panel(db, "aipulse-overview", "Traffic by feature")
    cols, rows = run(gclient, render(q.sql, START, END, interval_s, variables({})))
    assert round(sum(r[2] for r in rows) * interval_s) == len(ev)
    by_time = [r[0] for r in rows]
    assert all(t.timestamp() % interval_s == 0 for t in by_time)


def test_latency_table_p99_per_feature_and_model_within_one_percent(gclient, seeded):
    db, events = seeded
    q = _panel(db, "aipulse-latency", "Latency by feature and model")
    cols, rows = run(gclient, render(q.sql, START, END, 60, variables({})))
    assert len(rows) == 4
    for r in rows:
        row = dict(zip(cols, r))
        ev = [e for e in selected(events, {}) if e.feature == row["feature"] and e.model == row["model"]]
        assert row["requests"] == len(ev)
        for q_, col in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
            want = exact_quantile([e.latency_ms for e in ev], q_)
            assert abs(row[col] - want) <= 0.01 * want


def test_top_users_and_variant_deltas(gclient, seeded):
    db, events = seeded
    for scenario in ({}, {"feature": "chat", "service": ["svc-b"]}):
        cols, rows = run(gclient, render(_panel(db, "aipulse-cost", "Top users by spend").sql, START, END, 60,
                                         variables(scenario)))
        spend, calls = {}, {}
        for e in selected(events, scenario):  # windows starting in [from, to], like the panel
            if e.cost_usd is None:
                continue  # unpriced calls have no spend to rank (the Unpriced panels count them)
            spend[e.user_id] = spend.get(e.user_id, 0) + e.cost_usd
            calls[e.user_id] = calls.get(e.user_id, 0) + 1
        top = sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        got = [dict(zip(cols, r)) for r in rows]
        assert [r["user_id"] for r in got] == [u for u, _ in top]
        assert [r["cost_usd"] for r in got] == pytest.approx([c for _, c in top], rel=1e-9)
        assert [r["requests"] for r in got] == [calls[u] for u, _ in top]
        assert all(r["exact"] and r["max_missing_usd"] == 0 for r in got)  # a seed this sparse is never cut
        assert got[0]["spend_usd"] == pytest.approx(sum(spend.values()), rel=1e-9)

    cols, rows = run(gclient, render(_panel(db, "aipulse-rollout", "Variants against control").sql, START, END, 60,
                                     variables({})))
    by = {r[0]: dict(zip(cols, r)) for r in rows}
    assert by["control"]["latency_p95_ms_delta"] == 0
    # the candidate was seeded twice as slow: its delta is P95(candidate) - P95(control), each within 1%
    p95 = {v: exact_quantile([e.latency_ms for e in selected(events, {}) if e.variant == v], 0.95) for v in by}
    assert abs(by["candidate"]["latency_p95_ms_delta"] - (p95["candidate"] - p95["control"])) <= 0.01 * (
        p95["candidate"] + p95["control"])
    assert by["candidate"]["latency_p95_ms_delta"] > 0.8 * p95["control"]

"""The ``aipulse alerts`` annotation of every dashboard, run on the engine over seeded alert rows.

Alert state changes are written the way the worker writes them (``aipulse_alerts.notify.Notifier``
with a ClickHouse sink, rows from ``ch_row``) into a database migrated by the project; the
annotation's SQL is expanded like a panel's (``plugin_macros.render``: conditionalAll, template
variables, backend macros) and must return one region per alert overlapping the range: fired ->
resolved, or fired -> the range's end while it still fires, filtered by the dashboard variables
where the alert carries the dimension, with "severity,rule" as tags.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from aipulse_alerts.detector import Alert
from aipulse_alerts.notify import Notifier
from aipulse_grafana.boards import all_boards
from aipulse_grafana.chquery import TABLE
from aipulse_grafana.panels import ANNOTATION_COLUMNS, ANNOTATION_NAME
from aipulse_grafana.plugin_macros import ALL, Variable, render

pytestmark = pytest.mark.integration
# recent enough for the alerts table's TTL; ms in the times, as the detector writes them
START = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8, seconds=-7)
END = START + timedelta(hours=5, seconds=13)
OPTIONS = {"service": ["svc-a", "svc-b"], "feature": ["chat", "search"], "model": ["claude", "gpt-4o"],
           "variant": ["candidate", "control"]}


def _t(**delta) -> float:
    return round((START + timedelta(**delta)).timestamp() + 0.125, 3)


# name -> (rule, severity, group, fired, resolved or None, extra labels of the rule)
SEED = {
    "p99": ("latency_p99_ceiling", "critical", {"service": "svc-a", "feature": "chat"}, _t(minutes=30),
            _t(hours=1, minutes=30), {}),
    "fallback_open": ("fallback_rate_surge", "critical", {"service": "svc-b", "feature": "search", "model": "gpt-4o"},
                      _t(hours=2), None, {}),
    "silence": ("pipeline_silence", "warning", {"service": "svc-a"}, _t(hours=1), _t(hours=1, minutes=10), {}),
    "canary_before_range": ("canary_error_rate", "critical", {"service": "svc-a", "feature": "chat",
                                                              "variant": "candidate"},
                            _t(hours=-1), _t(minutes=20), {}),
    "lag_open_labelled": ("pipeline_lag", "warning", {}, _t(hours=4), None, {"service": "svc-b", "team": "ml"}),
    # outside the range: resolved before it starts, fired after it ends
    "old": ("latency_p95_ceiling", "warning", {"service": "svc-a", "feature": "chat"}, _t(hours=-3), _t(hours=-2), {}),
    "later": ("satisfaction_drop", "warning", {"service": "svc-a", "feature": "chat"}, _t(hours=5, minutes=10), None,
              {}),
}


def _alert(name: str, status: str) -> Alert:
    rule, severity, group, fired, resolved, extra = SEED[name]
    labels = {"alertname": rule, "severity": severity, "source": "aipulse", **group, **extra}
    return Alert(rule=rule, status=status, labels=labels,
                 annotations={"summary": f"{name} summary", "runbook": f"{name} runbook", "metric": rule, "value": "1"},
                 starts_at=fired, ends_at=resolved if status == "resolved" else None, value=1.0, threshold=0.5,
                 baseline=None, group=dict(group))


@pytest.fixture(scope="module")
def alerts_db(gclient, new_db):
    db = new_db("anno")
    clock = [0.0]

    def insert(rows: list[dict]) -> None:  # the worker's ClickHouse sink (aipulse_alerts.evaluator)
        cols = list(rows[0])
        gclient.insert(f"{db}.alerts", [[r[c] for c in cols] for r in rows], column_names=cols)

    n = Notifier(None, clickhouse=insert, clock=lambda: clock[0])
    for name, (_, _, _, fired, resolved, _) in SEED.items():
        clock[0] = fired + 0.5
        n.send([_alert(name, "firing")])
        if resolved is not None:
            clock[0] = resolved + 0.5
            n.send([_alert(name, "resolved")])
    clock[0] = SEED["p99"][3] + 30  # a re-sent firing row (replay, second worker): the same region
    n.send([_alert("p99", "firing")])
    assert n.failures["clickhouse"] == 0
    return db


def _variables(scenario: dict) -> list[Variable]:
    return [Variable(d, scenario.get(d, ALL), OPTIONS[d]) for d in OPTIONS]


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def _rows(client, sql: str) -> list[tuple]:
    """Result rows with times as aware UTC datetimes (the driver may return DateTime64('UTC') naive)."""
    r = client.query(sql)
    fix = (lambda v: v.replace(tzinfo=timezone.utc) if isinstance(v, datetime) and v.tzinfo is None else v)
    return list(r.column_names), [tuple(fix(v) for v in row) for row in r.result_rows]


def _expected(names: list[str]) -> list[tuple]:
    out = []
    for name in names:
        rule, severity, _, fired, resolved, _ = SEED[name]
        end = _dt(resolved) if resolved is not None else _dt(int(END.timestamp()))  # $__toTime: whole seconds
        status = "resolved" if resolved is not None else "firing"
        out.append((_dt(fired), end, f"{rule} ({status})", f"{name} summary - Runbook: {name} runbook",
                    f"{severity},{rule}"))
    return out


SCENARIOS = {
    "all": ({}, ["canary_before_range", "p99", "silence", "fallback_open", "lag_open_labelled"]),
    # service-wide and global alerts carry no feature: they stay
    "feature chat": ({"feature": "chat"}, ["canary_before_range", "p99", "silence", "lag_open_labelled"]),
    # the global lag alert carries service=svc-b as a rule label
    "service svc-a": ({"service": "svc-a"}, ["canary_before_range", "p99", "silence"]),
    "multi": ({"service": ["svc-b"], "model": ["gpt-4o", "claude"], "variant": "candidate"},
              ["fallback_open", "lag_open_labelled"]),
    "variant control": ({"variant": "control"}, ["p99", "silence", "fallback_open", "lag_open_labelled"]),
    "model claude": ({"model": "claude"}, ["canary_before_range", "p99", "silence", "lag_open_labelled"]),
}


def _annotation(board):
    (q,) = board.annotations
    return q


def test_every_dashboard_has_the_alert_annotation():
    for b in all_boards("aipulse"):
        data = b.build()
        (anno,) = data["annotations"]["list"]
        assert anno["name"] == ANNOTATION_NAME and anno["enable"] and not anno["hide"]
        assert anno["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "aipulse-clickhouse"}
        target = anno["target"]
        assert target["editorType"] == "sql" and target["format"] == TABLE and target["refId"]
        assert target["rawSql"] == _annotation(b).sql and "aipulse.alerts" in target["rawSql"]
        for d in OPTIONS:
            assert f"${{{d}:singlequote}}" in target["rawSql"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_annotation_returns_one_region_per_alert_in_range(gclient, alerts_db, scenario):
    selection, names = SCENARIOS[scenario]
    want = _expected(names)
    for b in all_boards(alerts_db):
        q = _annotation(b)
        sql = render(q.sql, START, END, 60, _variables(selection))
        cols, got = _rows(gclient, sql)
        assert cols == ANNOTATION_COLUMNS == q.columns
        assert got == want, f"{b.uid}, {scenario}:\n{json.dumps(got, default=str, indent=1)}"


def test_regions_follow_the_range(gclient, alerts_db):
    """A range ending while an alert fires ends its region there; a range after it resolved misses it."""
    q = _annotation(all_boards(alerts_db)[0])
    mid = START + timedelta(hours=1, minutes=5)  # p99 and silence fire, nothing has resolved yet
    _, rows = _rows(gclient, render(q.sql, START, mid, 60, _variables({})))
    by_title = {r[2]: r for r in rows}
    # resolved later: the region ends at its resolve time even when that is past the range
    assert by_title["latency_p99_ceiling (resolved)"][1] == _dt(SEED["p99"][4])
    assert "pipeline_silence (resolved)" in by_title and "fallback_rate_surge (firing)" not in by_title
    _, late = _rows(gclient, render(q.sql, START + timedelta(hours=3), END, 60, _variables({})))
    assert [r[2] for r in late] == ["fallback_rate_surge (firing)", "pipeline_lag (firing)"]

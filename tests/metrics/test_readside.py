"""metrics_query / `aipulse metrics` against the exact figures of the raw events."""
from __future__ import annotations

import argparse
import io
import json
import re
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from gen import T0, generate
from harness import ClickHouseStore, run_stream

from aipulse_stream.config import Settings
from aipulse_stream.readside import metrics_cli
from oracles.exact import QUANTILE_FIGURES, assert_metrics_match, compare, exact_metrics
from aipulse_stream.readside.query import FIGURES, QueryError, metrics_query, metrics_sql, plan_segments
from aipulse_stream.readside.times import TimeArgError, parse_time

GROUPINGS = ([], ["feature"], ["service", "model"], ["feature", "model", "variant"], ["variant"])
ISSUE_NAMES = ("requests", "errors", "fallbacks", "escalations", "error_rate", "fallback_rate",
               "escalation_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "cost_usd",
               "input_tokens", "output_tokens", "feedback_up", "feedback_down", "satisfaction",
               "evaluated", "correct", "accuracy", "shadow_pairs", "shadow_disagreements", "late", "orphaned")
N_MUST_SHOW = int(os.environ.get("AIPULSE_METRICS_N", "200000"))


def _ts(x):
    return datetime.fromtimestamp(x, timezone.utc)


@pytest.fixture(scope="module")
def loaded(ch_client, tmp_path_factory):
    """30k interactions (+ feedback, evaluations) through the aggregator with 5 crashes."""
    from aipulse_stream.storage.migrations import migrate

    settings = Settings(database="readside_it", offset_block=700)
    migrate(ch_client, settings)
    records = generate(30_000, seed=21)
    run_stream(records, settings, ClickHouseStore(ch_client, settings), crashes=5, seed=2, batch_size=900)
    yield ch_client, settings, records
    ch_client.command("DROP DATABASE IF EXISTS readside_it")


@pytest.mark.parametrize("group_by", GROUPINGS)
def test_query_equals_exact(loaded, group_by):
    client, settings, records = loaded
    start, end = _ts(T0 - 8 * 86400), _ts(T0 + 4 * 3600)
    got = metrics_query(client, settings, group_by, start, end)
    want = exact_metrics(records, settings, group_by, start, end)
    assert_metrics_match(got, want, group_by)
    assert sum(r["late"] for r in got) > 0 and sum(r["orphaned"] for r in got) > 0


def test_ragged_range_and_filters_equal_exact(loaded):
    client, settings, records = loaded
    start, end = _ts(T0 + 1234.5), _ts(T0 + 2 * 3600 + 77)   # not on window/hour boundaries
    where = {"model": ["gpt-4o", "llama-3"], "service": "support"}
    assert any(t == "metrics_hourly" for t, _, _ in plan_segments(start, end))
    got = metrics_query(client, settings, ["feature"], start, end, where)
    want = exact_metrics(records, settings, ["feature"], start, end, where)
    assert_metrics_match(got, want, ["feature"])
    assert [r["feature"] for r in got] == ["chat", "classify", "summarize"]


def test_compare_catches_a_wrong_quantile_or_count(loaded):
    client, settings, records = loaded
    start, end = _ts(T0), _ts(T0 + 3600)
    got = metrics_query(client, settings, [], start, end)
    want = exact_metrics(records, settings, [], start, end)
    bad = [dict(got[0], latency_p99_ms=got[0]["latency_p99_ms"] * 1.02, requests=got[0]["requests"] + 1)]
    problems = compare(bad, want, [])
    assert len(problems) == 2


def test_json_names_are_stable_and_complete(loaded):
    client, settings, _ = loaded
    args = argparse.ArgumentParser()
    metrics_cli.add_arguments(args)
    ns = args.parse_args(["--group-by", "feature,variant", "--from", _ts(T0).isoformat(),
                          "--to", _ts(T0 + 3600).isoformat(), "--where", "service=support", "--json"])
    out = io.StringIO()
    assert metrics_cli.run(ns, settings, client=client, out=out) == 0
    rows = json.loads(out.getvalue())
    assert len(rows) == 10  # 3 features x 3 variants + the orphans' ('', '')
    orphans = rows[0]
    assert (orphans["feature"], orphans["requests"], orphans["error_rate"], orphans["latency_p99_ms"]) == ("", 0, None, None)
    assert orphans["orphaned"] > 0
    for r in rows[1:]:
        assert {"feature", "variant"} <= set(r) and set(ISSUE_NAMES) <= set(r) and set(FIGURES) <= set(r)
        assert 0 <= r["error_rate"] <= 1 and r["latency_p50_ms"] <= r["latency_p95_ms"] <= r["latency_p99_ms"]


def test_table_output_and_usage_errors(loaded, capsys):
    client, settings, _ = loaded
    args = argparse.ArgumentParser()
    metrics_cli.add_arguments(args)
    out = io.StringIO()
    ns = args.parse_args(["--group-by", "model", "--from", str(T0), "--to", str(T0 + 600)])
    assert metrics_cli.run(ns, settings, client=client, out=out) == 0
    text = out.getvalue().splitlines()
    assert text[0].split()[:3] == ["model", "requests", "err%"] and len(text) == 2 + 4  # 3 models + orphans
    print("\n" + out.getvalue())
    # unpriced calls (tokens, no cost) are shown beside the cost they are missing from
    headers = re.split(r"\s{2,}", text[0].strip())
    col = headers.index("unpriced")
    want = {r["model"]: r["unpriced_requests"] for r in metrics_query(client, settings, ["model"], T0, T0 + 600)}
    shown = {re.split(r"\s{2,}", ln.strip())[0]: int(re.split(r"\s{2,}", ln.strip())[col]) for ln in text[2:]}
    assert sum(want.values()) > 0 and {m: v for m, v in shown.items() if m != "''"} == {m: v for m, v in want.items() if m}
    for bad in (["--group-by", "user"], ["--from", "yesterday"], ["--where", "model"], ["--from", "now", "--to", "-1h"]):
        assert metrics_cli.run(args.parse_args(bad), settings, client=client, out=io.StringIO()) == 2
    ns = args.parse_args(["--from", "-15m"])  # nothing was written in the last 15 minutes
    out = io.StringIO()
    assert metrics_cli.run(ns, settings, client=client, out=out) == 0 and out.getvalue().startswith("no window rows")


def test_time_arguments():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_time("now", now) == now
    assert parse_time("-15m", now) == now - timedelta(minutes=15)
    assert parse_time("now-2h", now) == now - timedelta(hours=2)
    assert parse_time("-7d", now) == now - timedelta(days=7)
    assert parse_time("2024-05-01T10:00:00+02:00", now) == datetime(2024, 5, 1, 8, tzinfo=timezone.utc)
    assert parse_time("1714550400", now) == datetime(2024, 5, 1, 8, tzinfo=timezone.utc)
    with pytest.raises(TimeArgError):
        parse_time("last tuesday", now)


def test_sql_is_parameterised_and_checks_dimensions():
    sql, params = metrics_sql(Settings(), ["feature"], T0, T0 + 60, {"model": ["x'; DROP TABLE t; --"]})
    assert "DROP" not in sql and params["w_model"] == ["x'; DROP TABLE t; --"]
    with pytest.raises(QueryError):
        metrics_sql(Settings(), ["user_id"], T0, T0 + 60)
    with pytest.raises(QueryError):
        metrics_sql(Settings(), ["feature"], T0, T0 + 60, {"prompt": "x"})


@pytest.mark.slow
def test_must_show_200k_interactions_with_crashes_equal_exact(ch_client, capsys):
    """The issue's must-show, at unit level: >= 200k interactions (plus feedback and
    evaluations), 5 crashes, stored in the real engine; every count, sum and rate equal,
    cost to the cent, every p50/p95/p99 for single keys, groups and all within 1%."""
    from aipulse_stream.storage.migrations import migrate

    settings = Settings(database="must_show", offset_block=2000)
    migrate(ch_client, settings)
    t = time.perf_counter()
    records = generate(N_MUST_SHOW, seed=200)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    run_stream(records, settings, ClickHouseStore(ch_client, settings), crashes=5, seed=5, batch_size=5000)
    t_run = time.perf_counter() - t
    start, end = _ts(T0 - 8 * 86400), _ts(T0 + 4 * 3600)
    worst = 0.0
    groups = 0
    for group_by in ([], ["feature"], ["model", "variant"], ["service", "feature", "model", "variant"]):
        got = metrics_query(ch_client, settings, group_by, start, end)
        want = exact_metrics(records, settings, group_by, start, end)
        assert_metrics_match(got, want, group_by)
        groups += len(got)
        by = {tuple(r[d] for d in group_by): r for r in got}
        for g, w in want.items():
            for f in QUANTILE_FIGURES:
                if w[f]:
                    worst = max(worst, abs(by[g][f] - w[f]) / w[f])
    rows = ch_client.query("SELECT count() FROM must_show.metrics_window FINAL").result_rows[0][0]
    n_int = sum(1 for _, _, e in records if e.__class__.__name__ == "Interaction")
    with capsys.disabled():
        print(f"\n[must-show] {n_int} interactions, {len(records)} events; generate {t_gen:.1f}s, "
              f"aggregate+store with 5 crashes {t_run:.1f}s; {rows} window rows; {groups} groups compared; "
              f"max quantile relative error {100 * worst:.4f} %")
    ch_client.command("DROP DATABASE IF EXISTS must_show")

"""Top spenders through the real broker, worker and ClickHouse endpoint, with a crash and a replay.

A known stream (one heavy user, hundreds of light ones, anonymous and unpriced calls) goes to
a topic of its own; the worker is ended abruptly after its third window insert (window rows
written, the spend rows of that drain not yet, offsets not committed) and a fresh worker
replays from the last commit. The stored summary, merged by readside.spend_top, is then held
to the guarantee against exact per-user sums computed by SQL from the raw interactions table.
"""
from __future__ import annotations

import os
import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from aipulse.contract import Interaction
from aipulse_stream.crashpoints import CRASH_ENV
from aipulse_stream.readside.spend_top import top_spenders, user_spend
from fault.helpers import TopicWorkers, produce
from support import wait_for

pytestmark = pytest.mark.integration
PARTITIONS = 3
EVENTS = 6000
K = 5
ENV = {"AIPULSE_SPEND_TOP_K": str(K), "AIPULSE_OFFSET_BLOCK": "500", "AIPULSE_BATCH_MAX_EVENTS": "300",
       "AIPULSE_BATCH_MAX_WAIT_S": "0.2"}


def known_stream(prefix: str, t0: datetime):
    rng = random.Random(13)
    offsets = [0] * PARTITIONS
    out = []
    for i in range(EVENTS):
        p = rng.randrange(PARTITIONS)
        whale = rng.random() < 0.1
        user = "whale" if whale else ("" if rng.random() < 0.02 else f"light-{rng.randrange(600)}")
        ev = Interaction(event_id=f"{prefix}-{i}", ts=t0 + timedelta(milliseconds=50 * i), service=f"{prefix}-svc",
                         feature=rng.choice(("chat", "search")), model="m", variant="v", latency_ms=20.0,
                         user_id=user, cost_usd=None if rng.random() < 0.02 else
                         (0.05 if whale else round(rng.uniform(0.001, 0.01), 6)))
        out.append((p, offsets[p], ev))
        offsets[p] += 1
    return out


def exited(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def test_summary_after_a_crash_and_replay_matches_exact_sums_from_raw_interactions(stack, stack_settings,
                                                                                 kafka_bootstrap, ch):
    prefix = f"sp{uuid.uuid4().hex[:6]}"
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    triples = known_stream(prefix, t0)
    group = TopicWorkers(stack_settings, kafka_bootstrap, partitions=PARTITIONS, extra_env=ENV)
    settings = group.settings.model_copy(update={"spend_top_k": K})
    db = settings.database
    service = f"{prefix}-svc"
    try:
        group.env[CRASH_ENV] = "after_window_insert@3"
        info = group.start()
        del group.env[CRASH_ENV]
        produce(kafka_bootstrap, group.topic, triples)
        wait_for(lambda: exited(info["pid"]), timeout=90, what="the worker to crash after its 3rd window insert")
        group.workers.clear()
        group.start()  # replays from the last commit

        # Exact, from the raw table (independent of the aggregator): per user, and in total.
        def raw_total():
            return ch.query(f"SELECT count(), sum(cost_usd) FROM {db}.interactions FINAL "
                            "WHERE service = %(s)s AND NOT shadow AND cost_usd IS NOT NULL",
                            {"s": service}).result_rows[0]

        priced = [ev for _p, _o, ev in triples if ev.cost_usd is not None]
        wait_for(lambda: raw_total()[0] == len(priced), timeout=120, what="every priced interaction stored raw")
        start, end = t0 - timedelta(minutes=1), t0 + timedelta(minutes=20)

        def summary():
            return top_spenders(ch, settings, start, end, where={"service": [service]}, limit=None)

        want_total = raw_total()[1]
        wait_for(lambda: (s := summary()) and abs(s[0]["spend_usd"] - want_total) < 1e-6, timeout=60,
                 what="the spend rows to cover every stored interaction")
        time.sleep(2)  # the last drain's rows: read once more, after any straggling insert
        got = summary()
        exact = dict(ch.query(f"SELECT user_id, sum(cost_usd) FROM {db}.interactions FINAL "
                              "WHERE service = %(s)s AND NOT shadow AND cost_usd IS NOT NULL AND user_id != '' "
                              "GROUP BY user_id", {"s": service}).result_rows)
        n = sum(exact.values())
        assert got[0]["spend_usd"] == pytest.approx(want_total, abs=1e-6)
        # the heavy user: first, exact (kept in every row it spent in), not double counted by the replay
        whale = got[0]
        assert whale["user_id"] == "whale" and whale["exact"]
        assert whale["cost_usd"] == pytest.approx(exact["whale"], abs=1e-9)
        assert whale["requests"] == sum(1 for ev in priced if ev.user_id == "whale")
        assert whale["share"] > 0.4
        # every other user: within its bound; the bound within N/(K+1); the cut users are many
        listed = {r["user_id"]: r for r in got}
        for user, s in exact.items():
            r = listed.get(user)
            if r is None:
                assert s <= n / (K + 1) + 1e-9, user
                continue
            assert r["cost_usd"] - 1e-9 <= s <= r["cost_usd"] + r["max_missing_usd"] + 1e-9, user
            assert r["max_missing_usd"] <= n / (K + 1) + 1e-9
            if r["exact"]:
                assert r["cost_usd"] == pytest.approx(s, abs=1e-9), user
        assert sum(not r["exact"] for r in got) > 50, "K was meant to cut light users"
        # the spend rows agree with the window rows: same stream, same contributions, no double count
        window_cost = ch.query(f"SELECT sum(cost_usd) FROM {db}.metrics_window FINAL WHERE service = %(s)s",
                               {"s": service}).result_rows[0][0]
        assert window_cost == pytest.approx(want_total, abs=1e-6)
        # what the per-user spend rule reads: (service, user) over a trailing window
        rule = user_spend(ch, settings, end=end, window_s=3600, where={"service": [service]}, min_volume=1)
        assert rule[0]["service"] == service and rule[0]["user_id"] == "whale"
        assert rule[0]["cost_usd"] == pytest.approx(exact["whale"], abs=1e-9)
    finally:
        group.stop()

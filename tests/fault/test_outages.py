"""Scenarios 3, 4 and 5 (end to end): outages of the broker and of ClickHouse, on a stack of
this module's own (private_stack: the session's stack never sees them).

3. Kafka stopped for 30 s and restarted while the SDK keeps emitting: the SDK buffers (sized
   so that nothing is dropped), its stats() say every event was acknowledged, and exactly
   those events are stored, once, with exact window metrics.
4. The ClickHouse endpoint stopped for 30 s and restarted while events keep flowing: the
   worker retries with backoff, commits no offset it has not stored, and catches up exactly.
5. The SDK started while the broker is dead, the broker started later: the buffered events
   are sent and stored end to end. (The SDK side of a broker lost mid-run, its bounded memory
   and the caller's speed, are tests/sdk/test_outage.py; scenario 3 is its end-to-end check.)
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

import aipulse
from fault.helpers import (TopicWorkers, committed_offsets, gen, gen_services, produce, raw_counts, relabel, row,
                           stored_ids, tail, topic_triples, wait_exact)
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]
OUTAGE_S = 30.0


def sdk_init(stack, topic: str, service: str) -> None:
    # Buffer sized for the outage: ~200 events/s for 30 s + a restart is ~10k events.
    aipulse.init(kafka_bootstrap=stack.bootstrap, topic=topic, service=service, user_salt="s",
                 max_queue_events=100_000, max_queue_bytes=256 * 1024 * 1024, delivery_timeout_ms=300_000,
                 connect_timeout_ms=1_000, warn_interval_s=3600, linger_ms=5)


class Emitter(threading.Thread):
    """The instrumented app: interactions (and feedback on every 4th) at ~rate events/s."""

    def __init__(self, prefix: str, rate: float = 200.0):
        super().__init__(daemon=True)
        self.prefix, self.rate = prefix, rate
        self.ids: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        tick = 0.05
        while not self.halt.is_set():
            t0 = time.monotonic()
            for _ in range(max(1, int(self.rate * tick))):
                iid = aipulse.record(event_id=f"{self.prefix}-{i}", feature=("chat", "search")[i % 2],
                                     model=("gpt-4o", "claude-3")[i % 3 == 0], latency_ms=50.0 + (i * 37) % 900,
                                     input_tokens=100 + i % 50, output_tokens=20 + i % 30, user_id=f"u{i % 97}",
                                     outcome="error" if i % 29 == 0 else "ok")
                self.ids.append(iid)
                if i % 4 == 0:
                    self.ids.append(aipulse.feedback(iid, ("thumbs_up", "thumbs_down")[i % 8 == 0],
                                                     event_id=f"{self.prefix}-f{i}"))
                i += 1
            self.halt.wait(max(0.0, tick - (time.monotonic() - t0)))


def end_to_end(stack, group, prefix: str, ids: list[str], st: dict, ch, scenario: str, recovery_from: float,
               **extra) -> None:
    """Stored == acknowledged == emitted, no duplicate row, window metrics exact; one table row."""
    emitted = len(set(ids))
    assert st["emitted"] == len(ids) and sum(st["dropped"].values()) == 0, st
    assert st["sent"] == st["emitted"] and st["queued"] == 0, st
    wait_for(lambda: stored_ids(ch, prefix, group.settings) >= emitted, timeout=120,
             what=f"{emitted} events stored")
    caught_up = time.monotonic()
    triples = topic_triples(stack.bootstrap, group.topic, expect=len(ids))
    on_topic = [ev.event_id for *_x, ev in triples]
    diffs = wait_exact(group.settings, triples, [f"{prefix}-app"], env=stack.env)
    rows, distinct = raw_counts(ch, prefix, group.settings)
    health = group.healthy()
    row(scenario, sent=st["sent"], stored=distinct, duplicates=rows - distinct, metric_differences=len(diffs),
        recovery_s=caught_up - recovery_from, sdk_dropped=sum(st["dropped"].values()),
        on_topic=len(on_topic), topic_duplicates=len(on_topic) - len(set(on_topic)), **extra)
    assert set(on_topic) == set(ids)
    assert distinct == emitted and rows == distinct
    assert not diffs, "\n".join(diffs[:30])
    assert all(health.values()), health


def test_kafka_stopped_30s_while_the_sdk_emits(private_stack):
    stack = private_stack
    prefix = f"b{uuid.uuid4().hex[:6]}"
    group = TopicWorkers(stack.settings, stack.bootstrap)
    group.start()
    pid = group.info["pid"]
    ch = stack.client()
    emitter = Emitter(prefix)
    try:
        sdk_init(stack, group.topic, f"{prefix}-app")
        emitter.start()
        time.sleep(5)
        stack.stop_kafka()
        time.sleep(OUTAGE_S)
        st_down = aipulse.stats()
        stack.start_kafka()
        restarted = time.monotonic()
        time.sleep(10)                 # the app keeps emitting after the broker is back
        emitter.halt.set()
        emitter.join()
        assert aipulse.flush(120), aipulse.stats()
        st = aipulse.stats()
        print(f"\nSDK while the broker was down: {st_down}\nSDK at the end: {st}")
        assert st_down["queued"] > 0  # the outage was real: events waited (buffer or in flight)
        end_to_end(stack, group, prefix, emitter.ids, st, ch, "3 Kafka broker down 30 s (SDK emitting)",
                   restarted, buffered_at_peak=st_down["queue_events"] + st_down["inflight_events"])
        assert group.info["pid"] == pid  # the worker rode out the outage
    finally:
        emitter.halt.set()
        aipulse.close(timeout=2)
        ch.close()
        group.stop()


def test_clickhouse_stopped_30s_while_events_flow(private_stack):
    stack = private_stack
    prefix = f"c{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(30_000, seed=41, spec=gen.Spec(partitions=4)), prefix)
    group = TopicWorkers(stack.settings, stack.bootstrap, extra_env={"AIPULSE_LOG_LEVEL": "info"})
    group.start()
    pid = group.info["pid"]
    ch = stack.client()
    try:
        n = len(triples)
        produce(stack.bootstrap, group.topic, triples[: n // 3])
        wait_for(lambda: stored_ids(ch, prefix, group.settings) >= n // 3, timeout=60, what="the first third stored")
        try:
            before = wait_for(lambda: committed_offsets(stack.bootstrap, group.group, group.topic), timeout=60,
                              what="a first committed offset")
        except BaseException:
            # (Once a stream pause left the last batch unacked: keep what the worker said.)
            print("--- worker log (last lines)\n" + tail(group.info["log"], 400))
            raise
        stack.stop_clickhouse()
        stopped_at = time.time()
        # Events keep flowing during the outage, in 5 slices over its 30 s.
        mid = triples[n // 3: 2 * n // 3]
        for k in range(5):
            produce(stack.bootstrap, group.topic, mid[k * len(mid) // 5:(k + 1) * len(mid) // 5])
            time.sleep(OUTAGE_S / 5)
        committed = committed_offsets(stack.bootstrap, group.group, group.topic)
        stack.start_clickhouse()
        restarted = time.monotonic()
        produce(stack.bootstrap, group.topic, triples[2 * n // 3:])
        wait_for(lambda: stored_ids(ch, prefix, group.settings) >= n, timeout=150, what=f"{n} events stored")
        caught_up = time.monotonic()
        diffs = wait_exact(group.settings, triples, gen_services(prefix), env=stack.env)
        rows, distinct = raw_counts(ch, prefix, group.settings)
        # Nothing committed that was not stored: every offset below the group's committed
        # offset (read at the end of the outage) was in ClickHouse before the endpoint stopped.
        unstored_committed = 0
        for p, c in committed.items():
            want = sum(1 for q, o, _ev in triples if q == p and o < c)
            got = ch.query(
                "SELECT count() FROM (" + " UNION ALL ".join(
                    f"SELECT event_id FROM {group.settings.database}.{t} FINAL WHERE _partition = {p} AND _offset < {c}"
                    f" AND ingested_at <= fromUnixTimestamp64Milli({int(stopped_at * 1000) + 500})"
                    f" AND startsWith(event_id, %(p)s)" for t in ("interactions", "feedback", "evaluations")) + ")",
                {"p": prefix + "-"}).result_rows[0][0]
            unstored_committed += want - got
        health = group.healthy()
        row("4 ClickHouse endpoint down 30 s (events flowing)", sent=n, stored=distinct,
            duplicates=rows - distinct, metric_differences=len(diffs), recovery_s=caught_up - restarted,
            committed_but_unstored=unstored_committed, committed_before=sum(before.values()),
            committed_at_outage_end=sum(committed.values()))
        assert distinct == n and rows == distinct
        assert unstored_committed == 0 and sum(committed.values()) > 0
        assert not diffs, "\n".join(diffs[:30])
        assert group.info["pid"] == pid and all(health.values()), health
    finally:
        ch.close()
        group.stop()


def test_sdk_started_under_a_dead_broker(private_stack):
    stack = private_stack
    prefix = f"d{uuid.uuid4().hex[:6]}"
    group = TopicWorkers(stack.settings, stack.bootstrap)
    group.start()
    ch = stack.client()
    emitter = Emitter(prefix)
    try:
        stack.stop_kafka()
        sdk_init(stack, group.topic, f"{prefix}-app")
        emitter.start()
        time.sleep(10)                  # the app starts and runs with no broker at all
        st_down = aipulse.stats()
        assert st_down["sent"] == 0 and not st_down["kafka_connected"], st_down
        stack.start_kafka()
        restarted = time.monotonic()
        time.sleep(5)
        emitter.halt.set()
        emitter.join()
        assert aipulse.flush(120), aipulse.stats()
        st = aipulse.stats()
        print(f"\nSDK before the broker existed: {st_down}\nSDK at the end: {st}")
        end_to_end(stack, group, prefix, emitter.ids, st, ch, "5 SDK started under a dead broker (10 s)",
                   restarted, buffered_at_peak=st_down["queue_events"])
    finally:
        emitter.halt.set()
        aipulse.close(timeout=2)
        ch.close()
        group.stop()


LEDGER_OUTAGE_S = 8.0


def test_the_loss_ledger_equals_the_sdks_stats_through_a_broker_outage(private_stack):
    """The issue's must-show: with a buffer too small for the outage, the SDK drops events
    while Kafka is away; its ledger (sdk_stats events, every second and once at close) is
    stored by the worker, and `aipulse metrics --ledger` shows exactly what the SDK's own
    stats() say at close: emitted, sent, queued, and every drop reason with its count."""
    import json
    import subprocess
    import sys

    stack = private_stack
    prefix = f"l{uuid.uuid4().hex[:6]}"
    service = f"{prefix}-app"
    group = TopicWorkers(stack.settings, stack.bootstrap)
    group.start()
    ch = stack.client()
    emitter = Emitter(prefix)
    started = time.time()
    try:
        client = aipulse.init(kafka_bootstrap=stack.bootstrap, topic=group.topic, service=service, user_salt="s",
                              max_queue_events=300, max_inflight_bytes=64 * 1024, connect_timeout_ms=1_000,
                              warn_interval_s=3600, linger_ms=5,
                              ledger_interval_s=1.0)
        emitter.start()
        time.sleep(3)
        stack.stop_kafka()
        time.sleep(LEDGER_OUTAGE_S)
        stack.start_kafka()
        time.sleep(8)                 # the app keeps emitting; the SDK reconnects
        emitter.halt.set()
        emitter.join()
        aipulse.flush(60)
        aipulse.close(timeout=10)     # sends the final ledger message
        st = client.stats()
        assert st["dropped"]["kafka_unavailable"] > 0, st   # the outage cost events: there is a loss to show

        def ledger() -> list[dict]:
            r = subprocess.run([sys.executable, "-m", "aipulse_cli", "metrics", "--ledger", "--json",
                                "--from", str(started - 60), "--where", f"service={service}"],
                               capture_output=True, text=True, timeout=60,
                               env={**__import__("os").environ, **stack.env, **group.env})
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)

        wait_for(lambda: any(row["final"] for row in ledger()), timeout=90, what="the final ledger row stored")
        rows = ledger()
        print(f"\nSDK stats at close: {st}\nledger: {rows}")
        assert len(rows) == 1 and rows[0]["instance_id"] == client.instance_id, rows
        got = rows[0]
        assert (got["emitted"], got["sent"], got["queued"]) == (st["emitted"], st["sent"], st["queued"])
        assert got["dropped"] == {r: n for r, n in st["dropped"].items() if n}
        assert got["lost"] == sum(st["dropped"].values())
        # Stored once per message: the periodic rows and the final one, no duplicates.
        n, distinct = ch.query(f"SELECT count(), uniqExact(event_id) FROM {group.database}.sdk_stats "
                               "WHERE service = {s:String}", parameters={"s": service}).result_rows[0]
        assert n == distinct and n >= 2, (n, distinct)
    finally:
        emitter.halt.set()
        aipulse.close(timeout=2)
        ch.close()
        group.stop()

"""``aipulse replay`` against the real broker, worker and ClickHouse engine (issue 12).

- the events topic: a replay of what is already stored changes nothing (every raw table's rows,
  not only FINAL, and every window and rollup row, compared before and after), also from the
  middle of an offset block; after lost ClickHouse rows, the same replay stores them back exactly;
- the dead-letter topic: events rejected under a too-tight limit are stored after the fix
  (a restarted worker without the limit) by a replay, counted exactly once in the windows; a
  second replay redelivers nothing; letters still invalid stay where they are.

Each test has a topic, consumer group and database of its own (fault.helpers.TopicWorkers).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest

from fault.helpers import (PARTITIONS, KafkaProducer_, TopicWorkers, create_topics, drain, gen, gen_services, produce, raw_counts,
                           read_topic, relabel, topic_triples, wait_exact)
from support import wait_for

pytestmark = pytest.mark.integration

BLOCK = 500  # small offset blocks: the stream spans several per partition
RAW = ("interactions", "feedback", "evaluations", "sdk_stats")
WINDOW_TABLES = ("metrics_window", "metrics_hourly", "metrics_daily", "partition_progress")


def cli_replay(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aipulse_cli", "replay", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def snapshot(ch, db: str, raw_write_times: bool = True) -> dict[str, list]:
    """Every row of every raw table (no FINAL: a duplicate row counts; with its ingested_at unless
    told otherwise: a row written again would show) and every window-side row as readers see it
    (FINAL; without written_at, the time a row version was written, new for a replaced row), sorted."""
    out = {}
    for t in RAW + WINDOW_TABLES:
        cols = [c for (c,) in ch.query("SELECT name FROM system.columns WHERE database = %(d)s AND table = %(t)s "
                                       "ORDER BY position", {"d": db, "t": t}).result_rows
                if c != "written_at" and (raw_write_times or c != "ingested_at")]
        final = " FINAL" if t in WINDOW_TABLES else ""
        out[t] = sorted(map(repr, ch.query(f"SELECT {', '.join(cols)} FROM {db}.{t}{final}").result_rows))
    return out


def produce_now(bootstrap: str, topic: str, triples) -> None:
    """fault.helpers.produce with the records' Kafka timestamps left at now: the broker refuses
    timestamps an hour ahead (message.timestamp.after.max.ms)."""
    producer = KafkaProducer_(bootstrap)
    for p, _o, ev in triples:
        producer.send(topic, partition=p, key=(ev.interaction_id or ev.event_id).encode(),
                      value=ev.model_dump_json(exclude_none=True).encode())
    producer.flush(120)
    producer.close()


def diff(before: dict, after: dict) -> list[str]:
    return [f"{t}: {len(before[t])} rows before, {len(after[t])} after, {len(set(before[t]) ^ set(after[t]))} differ"
            for t in before if before[t] != after[t]]


@pytest.fixture
def events_worker(stack, stack_settings, kafka_bootstrap):
    worker = TopicWorkers(stack_settings, kafka_bootstrap, extra_env={"AIPULSE_OFFSET_BLOCK": str(BLOCK)})
    worker.settings = worker.settings.model_copy(update={"offset_block": BLOCK})
    worker.start()
    yield worker
    worker.stop()


def test_replay_of_stored_events_changes_nothing_and_restores_lost_rows(events_worker, kafka_bootstrap, ch):
    worker = events_worker
    prefix = f"r{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(6000, seed=41, spec=gen.Spec(partitions=PARTITIONS)), prefix)
    produce(kafka_bootstrap, worker.topic, triples)
    drain(ch, prefix, triples, timeout=120, settings=worker.settings)
    assert not wait_exact(worker.settings, triples, gen_services(prefix))
    db = worker.database
    before = snapshot(ch, db)
    before_content = snapshot(ch, db, raw_write_times=False)
    assert all(before[t] for t in ("interactions", "feedback", "evaluations", "metrics_window"))

    # The whole topic, then one partition from the middle of a block (widened to the block start).
    out = cli_replay(worker.env, "--topic", worker.topic, "--from-offset", "0", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["mode"] == "events" and report["read"] == len(triples)
    assert report["raw_after"] == report["raw_before"]
    out = cli_replay(worker.env, "--topic", worker.topic, "--from-offset", str(BLOCK + 123), "--partition", "1")
    assert out.returncode == 0, out.stderr
    assert f"starts at {BLOCK}, the first offset of the block of {BLOCK + 123}" in out.stdout
    assert not diff(before, snapshot(ch, db)), diff(before, snapshot(ch, db))

    # ClickHouse lost the feedback rows and the base window rows: the replay puts them back as they were.
    ch.command(f"TRUNCATE TABLE {db}.feedback")
    ch.command(f"TRUNCATE TABLE {db}.metrics_window")
    out = cli_replay(worker.env, "--topic", worker.topic, "--from-time", "0", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["raw_after"]["feedback"] == len(before["feedback"]) > report["raw_before"]["feedback"] == 0
    after = snapshot(ch, db, raw_write_times=False)
    assert not diff(before_content, after), diff(before_content, after)
    assert not wait_exact(worker.settings, triples, gen_services(prefix), timeout=5)


def test_dead_letters_replayed_after_a_fix_are_stored_once(stack, stack_settings, kafka_bootstrap, ch):
    prefix = f"d{uuid.uuid4().hex[:6]}"
    # One service's events 120-135 s in the future (a producer whose clock ran ahead): the worker's
    # 60 s limit dead-letters them. The fix here is time itself (the clock was put right; a minute
    # later they are in range), so the same worker, never restarted, stores the redelivered ones.
    # (A fix needing a worker restart: see the README's replay section.)
    base = time.time() + 120
    triples = relabel(gen.generate(3000, seed=43, spec=gen.Spec(partitions=PARTITIONS)), prefix)
    search = [i for i, t in enumerate(triples) if t[2].service.endswith("-search")]
    for rank, i in enumerate(search):
        p, o, ev = triples[i]
        triples[i] = (p, o, ev.model_copy(update={"ts": datetime.fromtimestamp(base + 15 * rank / len(search), timezone.utc)}))
    ahead = {triples[i][2].event_id for i in search}
    worker = TopicWorkers(stack_settings, kafka_bootstrap, extra_env={"AIPULSE_MAX_FUTURE_S": "60"})
    worker.settings = worker.settings.model_copy(update={"max_future_s": 60})
    try:
        worker.start()
        produce_now(kafka_bootstrap, worker.topic, triples)
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        for i in range(5):  # letters no fix will save
            p.send(worker.topic, key=f"{prefix}-bad-{i}".encode(), value=b"{not json " + str(i).encode())
        p.flush(30)
        p.close()
        letters = read_topic(kafka_bootstrap, worker.dlq_topic, expect=len(ahead) + 5, timeout=90)
        # Those the worker reached while they were still more than 60 s ahead (a slow machine may
        # have reached the last ones in range: stored at once, as they should be).
        rejected = {json.loads(r.value)["event_id"] for r in letters if not r.value.startswith(b"{not json")}
        assert len(letters) == len(rejected) + 5 and len(rejected) > len(ahead) // 2 and rejected <= ahead
        drain(ch, prefix, [t for t in triples if t[2].event_id not in rejected], timeout=60, settings=worker.settings)

        if time.time() < base - 60 - 10:  # not fixed yet: every letter is still invalid, nothing moves
            early = cli_replay(worker.env, "--topic", worker.dlq_topic, "--from-offset", "0", "--json")
            assert early.returncode == 0, early.stderr
            assert json.loads(early.stdout)["redelivered"] == 0 or time.time() >= base - 60
        time.sleep(max(0.0, base + 15 - 60 + 2 - time.time()))
        out = cli_replay(worker.env, "--topic", worker.dlq_topic, "--from-offset", "0", "--json")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["redelivered"] == len(rejected) == report["stored_after_wait"], json.dumps(report)[-600:]
        assert report["already_stored"] == 0 and report["still_invalid"] == {"not JSON": 5}
        drain(ch, prefix, triples, timeout=60, settings=worker.settings)
        rows, distinct = raw_counts(ch, prefix, worker.settings)
        assert rows == distinct == len(triples)
        # What the worker counted: each event at the position it was stored from (its original
        # offset, or its redelivered one); the oracle reads them back from the topic.
        positions = set(ch.query(" UNION ALL ".join(f"SELECT _partition, _offset FROM {worker.database}.{t}"
                                                    for t in RAW)).result_rows)
        counted = [t for t in topic_triples(kafka_bootstrap, worker.topic, expect=len(triples) + report["redelivered"])
                   if (t[0], t[1]) in positions]
        assert len(counted) == len(triples)
        assert {(t[0], t[2].event_id) for t in counted} == {(t[0], t[2].event_id) for t in triples}  # partitions kept
        assert not wait_exact(worker.settings, counted, gen_services(prefix))
        before = snapshot(ch, worker.database)

        out = cli_replay(worker.env, "--topic", worker.dlq_topic, "--from-time=-1d", "--json")
        assert out.returncode == 0, out.stderr
        again = json.loads(out.stdout)
        assert again["redelivered"] == 0 and again["already_stored"] == len(rejected)
        after = snapshot(ch, worker.database)
        assert not diff(before, after), diff(before, after)
    finally:
        worker.stop()


def test_bad_arguments_and_missing_broker_are_one_line(stack, stack_settings):
    cases = [
        (["--topic", "aipulse.events", "--from-offset", "-3"], "--from-offset must be 0 or more"),
        (["--topic", "aipulse.events", "--from-time", "yesterday"], "cannot read time 'yesterday'"),
        (["--topic", "elsewhere", "--from-offset", "0"], "--topic must be the events topic"),
        (["--topic", "aipulse.events", "--from-offset", "5", "--to-offset", "2"], "is before --from-offset"),
    ]
    for args, words in cases:
        out = cli_replay({}, *args)
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = cli_replay({"AIPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "--topic", "aipulse.events", "--from-offset", "0")
    assert out.returncode == 2 and "cannot reach Kafka at 127.0.0.1:1" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr

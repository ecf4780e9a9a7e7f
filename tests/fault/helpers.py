"""Helpers of the end-to-end and fault suites: a known event stream through the real broker and
worker(s), read back raw (by event_id) and as window metrics (`aipulse metrics --json`), compared
with the exact figures computed from the events themselves.

Importable as ``fault.helpers`` (tests/ is on pytest's pythonpath)::

    group = TopicWorkers(settings, bootstrap, partitions=6)   # a topic + consumer group of its own
    group.start("w1"); group.start("w2")                       # several workers in one group
    produce(bootstrap, group.topic, triples)                   # (partition, offset, event) from gen
    drain(ch, prefix, triples, timeout=120)
    diffs = wait_exact(settings, triples, prefix)               # [] when every figure is equal
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from support import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metrics"))
import gen  # noqa: E402  (the metrics suite's deterministic generator)
from aipulse_stream.config import EVENTS_TOPIC_CONFIG  # noqa: E402

PARTITIONS = 4
GROUPINGS = (["service"], ["service", "feature", "model", "variant"], ["model"], ["variant", "feature"])
RAW_TABLES = ("interactions", "feedback", "evaluations")


def relabel(triples, prefix: str):
    """Prefix services and ids so that a test's events are its own in a shared database."""
    out = []
    for p, o, ev in triples:
        upd = {"service": f"{prefix}-{ev.service}", "event_id": f"{prefix}-{ev.event_id}"}
        if ev.interaction_id:
            upd["interaction_id"] = f"{prefix}-{ev.interaction_id}"
        out.append((p, o, ev.model_copy(update=upd)))
    return out


def create_topics(bootstrap: str, topics: dict[str, int], configs: dict[str, dict] | None = None) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    try:
        admin.create_topics([NewTopic(t, n, 1, topic_configs=(configs or {}).get(t, {})) for t, n in topics.items()])
    finally:
        admin.close()


class TopicWorkers:
    """Workers of their own (topic, consumer group, DLQ topic) in a stack; start, kill, stop them.

    ``start()``/``kill()``/``stop()`` without a name act on the first worker (``self.name``);
    ``start("w2")`` adds another worker to the same consumer group.
    """

    def __init__(self, settings, kafka_bootstrap: str, partitions: int = PARTITIONS, extra_env: dict | None = None):
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.topic = f"aipulse.test.{tag}"
        self.dlq_topic = f"aipulse.test.{tag}.dlq"
        self.group = f"aipulse-test-{tag}"
        self.name = f"worker-{tag}"
        self.bootstrap = kafka_bootstrap
        create_topics(kafka_bootstrap, {self.topic: partitions, self.dlq_topic: partitions},
                      configs={self.topic: EVENTS_TOPIC_CONFIG})
        # A database of its own: the raw tables carry (_partition, _offset) but not the topic, and
        # the worker's replay skip reads the highest stored offset per partition, so one database
        # serves one events topic (see docs/faults.md, "left to do").
        self.database = f"t_{tag}"
        self.settings = settings.model_copy(update={"topic": self.topic, "worker_group": self.group,
                                                    "dlq_topic": self.dlq_topic, "topic_partitions": partitions,
                                                    "database": self.database})
        self.env = {"AIPULSE_TOPIC": self.topic, "AIPULSE_WORKER_GROUP": self.group,
                    "AIPULSE_DLQ_TOPIC": self.dlq_topic, "AIPULSE_TOPIC_PARTITIONS": str(partitions),
                    "AIPULSE_DATABASE": self.database, **(extra_env or {})}
        self.workers: dict[str, dict] = {}

    def _full(self, name: str | None) -> str:
        return self.name if name is None else f"{self.name}-{name}"

    @property
    def info(self) -> dict | None:
        return self.workers.get(self.name) or next(iter(self.workers.values()), None)

    def start(self, name: str | None = None) -> dict:
        from aipulse_local.stack import start_worker

        full = self._full(name)
        self.workers[full] = start_worker(self.settings, name=full, extra_env=self.env)
        return self.workers[full]

    def kill(self, name: str | None = None) -> int | None:
        from aipulse_local.stack import stop_component

        full = self._full(name)
        self.workers.pop(full, None)
        return stop_component(self.settings, full, kill=True)

    def stop(self, name: str | None = None) -> None:
        """Graceful stop (SIGTERM) of one worker, or of all without a name."""
        from aipulse_local.stack import stop_component

        names = [self._full(name)] if name is not None else list(self.workers)
        for full in names:
            self.workers.pop(full, None)
            stop_component(self.settings, full)

    def metric(self, name: str, worker: str | None = None) -> float:
        """Sum of a Prometheus sample family of one running worker (short name; default the first)."""
        info = self.workers[self._full(worker)] if worker is not None else self.info
        body = urllib.request.urlopen(f"http://{info['address']}/metrics", timeout=3).read().decode()
        return sum(float(line.split()[-1]) for line in body.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def healthy(self) -> dict[str, bool]:
        from aipulse_local.stack import worker_ready
        from aipulse_local.state import pid_alive

        return {n: pid_alive(i["pid"]) and worker_ready(i["address"]) for n, i in self.workers.items()}


# Kept for the integration suite: one worker on its own topic and group.
TopicWorker = TopicWorkers


def produce(bootstrap: str, topic: str, triples) -> None:
    """Send generated (partition, offset, event) triples to their partitions (acks=all)."""
    producer = KafkaProducer_(bootstrap)
    for p, _o, ev in triples:  # the generator's partition: the join and lateness follow it
        producer.send(topic, partition=p, key=(ev.interaction_id or ev.event_id).encode(),
                      value=ev.model_dump_json(exclude_none=True).encode(),
                      timestamp_ms=int(ev.ts.timestamp() * 1000))
    producer.flush(120)
    producer.close()


def KafkaProducer_(bootstrap: str, **kw):
    from kafka import KafkaProducer

    opts = dict(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
                batch_size=256 * 1024, compression_type="lz4", max_request_size=4 * 1024 * 1024)
    opts.update(kw)
    return KafkaProducer(**opts)


def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 60.0, idle_s: float = 3.0):
    """Every record of a topic from the start: until `expect` arrived, or nothing new for idle_s."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024,
                             fetch_max_bytes=64 * 1024 * 1024)
    out: list = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            got = consumer.poll(timeout_ms=500)
            for batch in got.values():
                out.extend(batch)
            if got:
                last_new = time.monotonic()
            if expect is not None and len(out) >= expect:
                break
            if expect is None and time.monotonic() - last_new > idle_s:
                break
    finally:
        consumer.close()
    return out


def topic_triples(bootstrap: str, topic: str, expect: int, timeout: float = 60.0):
    """(partition, offset, event) of every valid event on a topic: what the worker must count."""
    from aipulse.contract import InvalidEvent, parse_event

    out = []
    for r in read_topic(bootstrap, topic, expect=expect, timeout=timeout):
        try:
            out.append((r.partition, r.offset, parse_event(r.value)))
        except InvalidEvent:
            pass
    out.sort(key=lambda t: (t[0], t[1]))
    return out


def _db(settings) -> str:
    return settings.database if settings is not None else "aipulse"


def stored_ids(ch, prefix: str, settings=None) -> int:
    """Distinct stored events (FINAL) whose event_id starts with prefix-."""
    db = _db(settings)
    sql = "SELECT " + " + ".join(f"(SELECT count() FROM {db}.{t} FINAL WHERE startsWith(event_id, %(p)s))"
                                 for t in RAW_TABLES)
    return ch.query(sql, {"p": prefix + "-"}).result_rows[0][0]


def raw_counts(ch, prefix: str, settings=None) -> tuple[int, int]:
    """(rows without FINAL, distinct event_ids) of the prefix: rows - distinct = duplicate rows."""
    db = _db(settings)
    union = " UNION ALL ".join(f"SELECT event_id FROM {db}.{t} WHERE startsWith(event_id, %(p)s)" for t in RAW_TABLES)
    rows, distinct = ch.query(f"SELECT count(), uniqExact(event_id) FROM ({union})", {"p": prefix + "-"}).result_rows[0]
    return int(rows), int(distinct)


def stored_event_ids(ch, prefix: str, settings=None) -> list[str]:
    db = _db(settings)
    union = " UNION ALL ".join(f"SELECT event_id FROM {db}.{t} WHERE startsWith(event_id, %(p)s)" for t in RAW_TABLES)
    return [r[0] for r in ch.query(union, {"p": prefix + "-"}).result_rows]


def cli_metrics(group_by, start, end, services, env: dict | None = None) -> list[dict]:
    args = [sys.executable, "-m", "aipulse_cli", "metrics", "--group-by", ",".join(group_by),
            "--from", start, "--to", end, "--json"]
    for s in services:
        args += ["--where", f"service={s}"]
    out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def metric_diffs(settings, triples, services, env: dict | None = None) -> list[str]:
    """Differences between `aipulse metrics --json` and exact_metrics over the triples, for
    every grouping of GROUPINGS ([] = every count and sum equal, quantiles within 1%)."""
    from oracles.exact import compare, exact_metrics

    times = [ev.ts.timestamp() for _p, _o, ev in triples]
    lo, hi = min(times) - 3600, max(times) + 3600
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lo))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hi))
    env = {"AIPULSE_DATABASE": settings.database, **(env or {})}
    diffs = []
    for group_by in GROUPINGS:
        got = cli_metrics(group_by, start, end, services, env)
        want = exact_metrics(triples, settings, group_by, start=lo, end=hi, where={"service": list(services)})
        diffs += [f"{','.join(group_by)}: {d}" for d in compare(got, want, group_by)]
    return diffs


def gen_services(prefix: str) -> list[str]:
    return [f"{prefix}-{s}" for s in gen.SERVICES]


def wait_exact(settings, triples, services, env: dict | None = None, timeout: float = 30.0) -> list[str]:
    """metric_diffs until it is empty or timeout (the last window rows of a drain land just
    after the raw rows); returns the last differences."""
    deadline = time.monotonic() + timeout
    while True:
        diffs = metric_diffs(settings, triples, services, env)
        if not diffs or time.monotonic() >= deadline:
            return diffs
        time.sleep(1.0)


def check_exact(settings, triples, prefix: str, env: dict | None = None) -> None:
    """Assert `aipulse metrics --json` equals exact_metrics for the generated services of prefix."""
    diffs = wait_exact(settings, triples, gen_services(prefix), env)
    assert not diffs, "\n".join(diffs[:30])


def drain(ch, prefix: str, triples, timeout: float, settings=None) -> float:
    """Wait until every distinct event of the triples is stored; returns when (monotonic)."""
    expected = len({ev.event_id for _p, _o, ev in triples})
    wait_for(lambda: stored_ids(ch, prefix, settings) >= expected, timeout=timeout,
             what=f"{expected} raw events with prefix {prefix}")
    return time.monotonic()


def drain_progress(ch, prefix: str, triples, idle_s: float = 60.0, settings=None, limit_s: float = 900.0,
                   logs=()) -> float:
    """Wait until every distinct event of the triples is stored, failing when the stored count
    has not grown for ``idle_s`` seconds (a stuck group, not a slow machine) or after
    ``limit_s`` in all; returns when (monotonic). ``logs``: worker log paths whose tails the
    failure message shows."""
    expected = len({ev.event_id for _p, _o, ev in triples})
    start = last_move = time.monotonic()
    last = -1
    while True:
        now_stored = stored_ids(ch, prefix, settings)
        now = time.monotonic()
        if now_stored >= expected:
            return now
        if now_stored != last:
            last, last_move = now_stored, now
        if now - last_move > idle_s or now - start > limit_s:
            tails = "".join(f"\n--- {p} (last lines)\n" + tail(p) for p in logs)
            why = f"no new raw event for {idle_s:.0f}s" if now - last_move > idle_s else f"{limit_s:.0f}s in all"
            pytest.fail(f"{why}: {now_stored} of {expected} raw events with prefix {prefix} stored{tails}")
        time.sleep(0.5)


def tail(path, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as err:
        return f"({err})\n"


def group_assignment(bootstrap: str, group: str, topic: str) -> list[list[int]]:
    """The partitions of ``topic`` each member of a consumer group holds, as the group
    coordinator says (one sorted list per member; [] = no members). Only that topic: Faust's
    assignor also hands its leader a partition of the group's ``__assignor-__leader`` topic."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    try:
        desc = admin.describe_groups([group])[group]
    finally:
        admin.close()
    out = []
    for member in desc.get("members") or []:
        assignment = member.get("member_assignment") or {}
        parts = assignment.get("assigned_partitions") or [] if isinstance(assignment, dict) else []
        out.append(sorted(p for tp in parts if tp.get("topic") == topic for p in tp.get("partitions", [])))
    return out


def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset per partition of ``topic`` (none yet: absent)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        got = admin.list_group_offsets({group_id: None}).get(group_id, {})
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in got.items() if tp.topic == topic and om.offset >= 0}


def wait_acked(worker: TopicWorkers, triples, timeout: float = 120) -> None:
    """The worker has consumed as many messages as the stream holds."""
    wait_for(lambda: worker.metric("aipulse_worker_consumed_total") >= len(triples), timeout=timeout,
             what="the worker to consume the whole stream")


def row(scenario: str, sent: int, stored: int, duplicates: int, metric_differences: int,
        recovery_s: float | None, **extra) -> dict:
    """One line of the results table (printed, and collected into RESULTS)."""
    r = {"scenario": scenario, "sent": sent, "stored": stored, "duplicates": duplicates,
         "metric_differences": metric_differences,
         "recovery_s": None if recovery_s is None else round(recovery_s, 1), **extra}
    print("\nFAULT-RESULT " + json.dumps(r, sort_keys=False))
    out = os.environ.get("AIPULSE_FAULT_RESULTS")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(r) + "\n")
    return r

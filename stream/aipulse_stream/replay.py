"""Replay a range of stored Kafka records into ClickHouse, idempotently (``aipulse replay``).

Two topics, two ways, each chosen so that replaying what is already stored changes nothing::

    rng = ReplayRange(topic="aipulse.events", from_time=datetime(2026, 12, 1, tzinfo=timezone.utc))
    report = replay(settings, rng, progress=print)      # -> ReplayReport
    report.lines()                                      # what was read, stored, skipped

**The events topic** (a backfill after lost ClickHouse data, or a recount after a fix): the
records are run through the worker's own :class:`~aipulse_stream.pipeline.Pipeline` *at their
own partition and offsets*, exactly as a worker restarted at that offset would. That is the
path the crash-point suite proves exact: raw rows at or below the stored offset of their table
are skipped, and window rows are contributions per (partition, offset block) recomputed from
the block's first offset and *replaced* (same identity, same version, same content). So the
range is widened down to the start of its first offset block (a block recomputed from its
middle would replace a whole row with a part of it); a block whose first offsets are gone
(retention) is skipped, and said so. Re-producing these records instead would give them new
offsets, hence new blocks: every window would count them twice.

**The dead-letter topic** (after a fix to the producer's clock, a limit or the contract): each
letter's original bytes are validated again with *this* process's settings; the ones now valid
and not already stored (by ``event_id``, in their kind's raw table) are produced onto the events
topic with their key and without the DLQ headers, and the worker stores and counts them like any
new event (it validates them again: it needs the same fix). Letters still invalid are counted by
reason and left alone (re-sending them would only dead-letter them again); truncated letters
(``aipulse-truncated``: the original bytes are gone) cannot be redelivered. The replay then waits
until the worker has stored what it redelivered, so running it twice in a row is a no-op.

Replays never page: the streaming alert detector is not fed (the worker already saw that
history). Errors are :class:`ReplayError`, one line saying what to fix.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from aipulse.kafka_security import classify_failure
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from .config import Settings
from .pipeline import Pipeline
from .sinks.raw_events import TABLES
from .storage.clickhouse import connect
from .transforms.validate import Rejected, Validator

Progress = Callable[[str], None]

POLL_MS = 500
STALL_S = 30.0            # no record for this long while the range is not read: an error
CONNECT_TIMEOUT_S = 5.0
PROGRESS_EVERY_S = 2.0    # at most one progress line this often
DLQ_HEADERS = ("aipulse-reason", "aipulse-source", "aipulse-truncated")


class ReplayError(ValueError):
    """A replay that cannot run as asked; the message is one line saying what to fix."""


@dataclass(frozen=True)
class ReplayRange:
    """Which records: a topic, optionally one partition, a start (offset or time) and an end.

    ``from_offset``/``to_offset`` apply to every chosen partition; ``to_offset`` is inclusive.
    Times select by the records' Kafka timestamps (the first record at or after the time)."""

    topic: str
    from_offset: int | None = None
    from_time: datetime | None = None
    to_offset: int | None = None
    to_time: datetime | None = None
    partition: int | None = None

    def check(self) -> None:
        if (self.from_offset is None) == (self.from_time is None):
            raise ReplayError("give exactly one of --from-offset N or --from-time TIME")
        if self.to_offset is not None and self.to_time is not None:
            raise ReplayError("give at most one of --to-offset N or --to-time TIME")
        for name in ("from_offset", "to_offset", "partition"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ReplayError(f"--{name.replace('_', '-')} must be 0 or more (got {value})")
        if self.from_offset is not None and self.to_offset is not None and self.to_offset < self.from_offset:
            raise ReplayError(f"--to-offset {self.to_offset} is before --from-offset {self.from_offset}")
        if self.from_time is not None and self.to_time is not None and self.to_time <= self.from_time:
            raise ReplayError("--to-time must be after --from-time")


@dataclass
class ReplayReport:
    mode: str                                   # "events" or "dead-letters"
    topic: str
    ranges: dict[int, tuple[int, int]]          # partition -> [first, end) offsets read
    read: int = 0
    notes: list[str] = field(default_factory=list)
    # events mode: raw rows of the range per table, before and after
    raw_before: dict[str, int] = field(default_factory=dict)
    raw_after: dict[str, int] = field(default_factory=dict)
    # dead-letters mode
    redelivered: int = 0
    already_stored: int = 0
    stored_after_wait: int | None = None
    still_invalid: collections.Counter = field(default_factory=collections.Counter)
    truncated: int = 0
    into: str | None = None

    def lines(self) -> list[str]:
        span = ", ".join(f"p{p} {a}..{b - 1}" for p, (a, b) in sorted(self.ranges.items()) if b > a) or "nothing"
        out = [f"replay of {self.topic} ({self.mode}): {self.read:,} records read ({span})"]
        out += self.notes
        if self.mode == "events":
            for t in self.raw_before:
                added = self.raw_after.get(t, 0) - self.raw_before[t]
                out.append(f"  {t}: {self.raw_after.get(t, 0):,} raw rows in the range ({added:+,} stored by the replay)")
            out.append("  window rows of every block read: recomputed and replaced (identical when already stored)")
        else:
            out.append(f"  redelivered onto {self.into}: {self.redelivered:,}; already stored (skipped): {self.already_stored:,}")
            if self.stored_after_wait is not None:
                out.append(f"  stored by the worker: {self.stored_after_wait:,} of {self.redelivered:,}")
            for reason, n in self.still_invalid.most_common():
                out.append(f"  still invalid ({n:,}): {reason}")
            if self.truncated:
                out.append(f"  truncated letters (original bytes gone, not redelivered): {self.truncated:,}")
        return out

    def as_dict(self) -> dict:
        return {"mode": self.mode, "topic": self.topic, "read": self.read,
                "ranges": {str(p): list(r) for p, r in sorted(self.ranges.items())}, "notes": self.notes,
                "raw_before": self.raw_before, "raw_after": self.raw_after, "redelivered": self.redelivered,
                "already_stored": self.already_stored, "stored_after_wait": self.stored_after_wait,
                "still_invalid": dict(self.still_invalid), "truncated": self.truncated, "into": self.into}


# -- Kafka -----------------------------------------------------------------------------------
def _kafka_failure(settings: Settings, err: BaseException) -> ReplayError:
    kind = classify_failure(err)
    if kind:
        return ReplayError(settings.kafka_security.failure_line(kind, settings.kafka_bootstrap or "?"))
    return ReplayError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {type(err).__name__} "
                       "(is the stack up? `aipulse status`; or set AIPULSE_KAFKA_BOOTSTRAP)")


def _reachable(bootstrap: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether one of the bootstrap servers accepts a TCP connection (kafka-python would spend
    its whole request timeout finding out that none does)."""
    for server in (b.strip() for b in bootstrap.split(",") if b.strip()):
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
            return True
        except (OSError, ValueError):
            continue
    return False


def _consumer(settings: Settings) -> KafkaConsumer:
    if not settings.kafka_bootstrap:
        raise ReplayError("no Kafka configured: set AIPULSE_KAFKA_BOOTSTRAP or run `aipulse up`")
    if not _reachable(settings.kafka_bootstrap):
        raise ReplayError(f"cannot reach Kafka at {settings.kafka_bootstrap}: connection refused or timed out "
                          "(is the stack up? `aipulse status`; or set AIPULSE_KAFKA_BOOTSTRAP)")
    try:
        return KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                             max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
                             request_timeout_ms=20_000, **settings.kafka_security.client_options())
    except (KafkaError, OSError) as err:
        raise _kafka_failure(settings, err) from None


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def plan(consumer: KafkaConsumer, rng: ReplayRange) -> dict[int, tuple[int, int]]:
    """Per partition, the [first, end) offsets the range selects, within what the topic holds."""
    parts = consumer.partitions_for_topic(rng.topic)
    if not parts:
        raise ReplayError(f"topic {rng.topic!r} does not exist on this broker")
    if rng.partition is not None:
        if rng.partition not in parts:
            raise ReplayError(f"topic {rng.topic!r} has no partition {rng.partition} (it has 0..{max(parts)})")
        parts = {rng.partition}
    tps = [TopicPartition(rng.topic, p) for p in sorted(parts)]
    begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)

    def at_time(t: datetime) -> dict[TopicPartition, int]:
        found = consumer.offsets_for_times({tp: _ms(t) for tp in tps})
        return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps}

    starts = at_time(rng.from_time) if rng.from_time is not None else {tp: rng.from_offset for tp in tps}
    ends = at_time(rng.to_time) if rng.to_time is not None else (
        {tp: rng.to_offset + 1 for tp in tps} if rng.to_offset is not None else dict(end))
    out = {}
    for tp in tps:
        first = max(starts[tp], begin[tp])
        last = min(ends[tp], end[tp])
        out[tp.partition] = (first, max(first, last))
    return out


def _read(consumer: KafkaConsumer, topic: str, ranges: dict[int, tuple[int, int]], batch_max: int,
          progress: Progress | None):
    """Yield lists of records of the ranges (offset order per partition), until every range is read."""
    todo = {p: r for p, r in ranges.items() if r[1] > r[0]}
    total = sum(b - a for a, b in todo.values())
    if not todo:
        return
    tps = {p: TopicPartition(topic, p) for p in todo}
    consumer.assign(list(tps.values()))
    for p, (first, _end) in todo.items():
        consumer.seek(tps[p], first)
    done = 0
    last_record = last_said = time.monotonic()
    while todo:
        got = consumer.poll(timeout_ms=POLL_MS, max_records=batch_max)
        batch = []
        for tp, records in got.items():
            end = todo.get(tp.partition, (0, -1))[1]
            batch.extend(r for r in records if r.offset < end)
        for p in list(todo):
            if consumer.position(tps[p]) >= todo[p][1]:  # offsets may have gaps (compaction, transactions)
                consumer.pause(tps[p])
                del todo[p]
        if batch:
            last_record = time.monotonic()
            done += len(batch)
            batch.sort(key=lambda r: (r.partition, r.offset))
            yield batch
        elif todo and time.monotonic() - last_record > STALL_S:
            where = ", ".join(f"p{p} at {consumer.position(tps[p])}" for p in todo)
            raise ReplayError(f"no records from Kafka for {STALL_S:.0f}s while reading {topic} ({where}): is the broker up?")
        if progress is not None and time.monotonic() - last_said >= PROGRESS_EVERY_S and todo:
            last_said = time.monotonic()
            progress(f"read {done:,} of {total:,} records ({100 * done // max(total, 1)}%)")


# -- ClickHouse ------------------------------------------------------------------------------
def _raw_counts(client, settings: Settings, topic: str, ranges: dict[int, tuple[int, int]]) -> dict[str, int]:
    """Raw rows (FINAL: distinct events) stored from the ranges, per raw table."""
    db = settings.database
    conds = " OR ".join(f"(_partition = {int(p)} AND _offset >= {int(a)} AND _offset < {int(b)})"
                        for p, (a, b) in ranges.items() if b > a) or "0"
    out = {}
    for table, _cols in TABLES.values():
        sql = f"SELECT count() FROM {db}.{table} FINAL WHERE _topic = {{t:String}} AND ({conds})"
        out[table] = int(client.query(sql, parameters={"t": topic}).result_rows[0][0])
    return out


def stored_event_ids(client, settings: Settings, by_table: dict[str, list[str]]) -> set[str]:
    """Which of the given event ids are stored, looked up in their own kind's raw table."""
    found: set[str] = set()
    for table, ids in by_table.items():
        for i in range(0, len(ids), 5000):
            chunk = ids[i:i + 5000]
            rows = client.query(f"SELECT DISTINCT event_id FROM {settings.database}.{table} "
                                "WHERE event_id IN {ids:Array(String)}", parameters={"ids": chunk}).result_rows
            found.update(r[0] for r in rows)
    return found


def _source_partition(headers, topic: str, partitions: set[int]) -> int | None:
    """The partition a dead letter came from (its ``aipulse-source`` header, ``topic/partition/offset``),
    when it is a partition of ``topic``; else None (the producer's partitioner decides, by key)."""
    source = dict(headers or []).get("aipulse-source", b"").decode("utf-8", "replace")
    src_topic, partition, offset = (source.rsplit("/", 2) + ["", ""])[:3]
    if src_topic != topic or not partition.isdigit() or not offset.isdigit():
        return None
    return int(partition) if int(partition) in partitions else None


# -- the two modes ---------------------------------------------------------------------------
def replay(settings: Settings, rng: ReplayRange, progress: Progress | None = None, wait_s: float = 120.0) -> ReplayReport:
    """Replay ``rng`` (see the module docstring); ``wait_s``: how long a dead-letter replay waits
    for the worker to store what it redelivered (0: do not wait)."""
    rng.check()
    if rng.topic not in (settings.topic, settings.dlq_topic):
        raise ReplayError(f"--topic must be the events topic {settings.topic!r} or its dead-letter topic "
                          f"{settings.dlq_topic!r} (AIPULSE_TOPIC, AIPULSE_DLQ_TOPIC); got {rng.topic!r}")
    consumer = _consumer(settings)
    try:
        try:
            ranges = plan(consumer, rng)
        except KafkaError as err:
            raise _kafka_failure(settings, err) from None
        if rng.topic == settings.topic:
            return asyncio.run(_replay_events(settings, consumer, ranges, progress))
        return _replay_dead_letters(settings, consumer, ranges, progress, wait_s)
    finally:
        consumer.close()


def _block_aligned(settings: Settings, consumer: KafkaConsumer, topic: str,
                   ranges: dict[int, tuple[int, int]], notes: list[str]) -> dict[int, tuple[int, int]]:
    """Widen each range down to its first block's start; skip a block whose start is gone."""
    block = settings.offset_block
    begin = consumer.beginning_offsets([TopicPartition(topic, p) for p in ranges])
    out = {}
    for p, (first, end) in ranges.items():
        if end <= first:
            out[p] = (first, end)
            continue
        start = first - first % block
        oldest = begin[TopicPartition(topic, p)]
        if start < oldest:
            start = oldest - oldest % block + block if oldest % block else oldest
            notes.append(f"  p{p}: offsets {first}..{min(start, end) - 1} skipped: their offset block starts before "
                         f"{oldest}, the oldest record Kafka still holds, and a block is only recomputed whole")
        elif start < first:
            notes.append(f"  p{p}: starts at {start}, the first offset of the block of {first} "
                         f"(blocks of {block:,} offsets are recomputed whole)")
        out[p] = (start, max(start, end))
    return out


async def _replay_events(settings: Settings, consumer: KafkaConsumer, ranges, progress) -> ReplayReport:
    notes: list[str] = []
    ranges = _block_aligned(settings, consumer, settings.topic, ranges, notes)
    report = ReplayReport(mode="events", topic=settings.topic, ranges=ranges, notes=notes)
    producer = None

    async def dlq_send(key, value, headers):
        # Only letters past every stored raw row of their partition reach here (pipeline.py):
        # those an earlier run may not have delivered.
        nonlocal producer
        if producer is None:
            producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                     **settings.kafka_security.client_options())
        fut = producer.send(settings.dlq_topic, key=key, value=value, headers=headers)
        await asyncio.get_running_loop().run_in_executor(None, fut.get, 60)

    pipeline = Pipeline(settings, dlq_send=dlq_send, topic=settings.topic)
    await pipeline.start()
    try:
        # The pipeline never pages (the alert evaluator is a worker service, not started here).
        report.raw_before = await pipeline.writer.run(
            lambda c: _raw_counts(c, settings, settings.topic, ranges), "count the stored raw rows")
        for batch in _read(consumer, settings.topic, ranges, settings.batch_max_events, progress):
            await pipeline.process(batch)
            report.read += len(batch)
        await pipeline.flush()  # the last batch's writes are in flight until flushed
        report.raw_after = await pipeline.writer.run(
            lambda c: _raw_counts(c, settings, settings.topic, ranges), "count the stored raw rows")
    finally:
        await pipeline.stop()
        if producer is not None:
            producer.close(timeout=10)
    return report


def _replay_dead_letters(settings: Settings, consumer: KafkaConsumer, ranges, progress, wait_s: float) -> ReplayReport:
    report = ReplayReport(mode="dead-letters", topic=settings.dlq_topic, ranges=ranges, into=settings.topic)
    validator = Validator(settings)
    client = connect(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=20, max_request_size=4 * 1024 * 1024,
                             **settings.kafka_security.client_options())
    events_parts = consumer.partitions_for_topic(settings.topic) or set()
    sent: dict[str, list[str]] = {}   # table -> event ids redelivered
    seen: set[str] = set()
    try:
        for batch in _read(consumer, settings.dlq_topic, ranges, settings.batch_max_events, progress):
            report.read += len(batch)
            now = time.time()
            candidates = []
            for r in batch:
                headers = dict(r.headers or [])
                if "aipulse-truncated" in headers:
                    report.truncated += 1
                    continue
                result = validator.check(r.value, now)
                if isinstance(result, Rejected):
                    report.still_invalid[result.reason.split(":")[0][:120]] += 1
                    continue
                candidates.append((r, result))
            by_table: dict[str, list[str]] = {}
            for _r, ev in candidates:
                by_table.setdefault(TABLES[ev.kind][0], []).append(ev.event_id)
            stored = stored_event_ids(client, settings, by_table)
            futures = []
            for r, ev in candidates:
                if ev.event_id in stored or ev.event_id in seen:
                    report.already_stored += 1
                    continue
                seen.add(ev.event_id)
                # The original key, bytes and partition (an interaction and its feedback must meet
                # in one partition whatever partitioner the producer used); the DLQ headers stay
                # behind (they describe the rejection).
                futures.append(producer.send(settings.topic, key=r.key, value=r.value,
                                             partition=_source_partition(r.headers, settings.topic, events_parts)))
                sent.setdefault(TABLES[ev.kind][0], []).append(ev.event_id)
            producer.flush(60)
            for f in futures:
                f.get(timeout=60)  # raises if a record was not delivered
            report.redelivered += len(futures)
    except KafkaError as err:
        raise _kafka_failure(settings, err) from None
    finally:
        producer.close(timeout=10)
    if wait_s > 0 and report.redelivered:
        deadline = time.monotonic() + wait_s
        last_said = time.monotonic()
        while True:
            n = len(stored_event_ids(client, settings, sent))
            report.stored_after_wait = n
            if n >= report.redelivered or time.monotonic() >= deadline:
                break
            if progress is not None and time.monotonic() - last_said >= PROGRESS_EVERY_S:
                last_said = time.monotonic()
                progress(f"waiting for the worker to store the redelivered events: {n:,} of {report.redelivered:,}")
            time.sleep(0.5)
        if report.stored_after_wait < report.redelivered:
            report.notes.append(f"  the worker stored {report.stored_after_wait:,} of {report.redelivered:,} within "
                                f"{wait_s:.0f}s: is it running, with the fix? (a second replay skips what is stored)")
    client.close()
    return report

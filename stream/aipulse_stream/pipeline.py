"""The worker's batch pipeline, independent of Faust: validate, dead-letter, store, aggregate.

``process(batch)`` takes the messages of one batch (any partitions, in offset order per
partition), computes it, starts its writes and returns, per partition, the highest offset that
may now be acked: everything up to it is durably stored. The batch's own writes run on while
the caller fetches and computes the next batch (``process`` then waits for them before it
starts the next writes, and reports their offsets); ``flush()`` waits for the writes in flight
and reports theirs. Storage failures are retried with backoff inside (nothing unstored is ever
reported, so nothing unstored is ever committed)::

    pipeline = Pipeline(settings, dlq_send=send)
    await pipeline.start()                      # connects, applies migrations
    ackable = await pipeline.process(messages)  # {partition: offset}, of the batches stored so far
    ackable = await pipeline.flush()            # the rest (when the stream pauses, or to stop)

The order that keeps replays exact: one batch's writes start only after the previous batch's
have landed (the raw tables' stored offsets then never skip a batch), and a read of ClickHouse
(a join lookup, a watermark, stored offsets) waits for the writes in flight.

Window metrics (transforms/windows.py) write each window's contribution per (partition,
offset block) as a row replaced on replay; offsets are acked only up to complete, stored
blocks, so a restarted worker recomputes the open block from its start (see docs/architecture.md).
"""
from __future__ import annotations

import asyncio
import collections
import gc
import logging
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from . import crashpoints
from . import selfmetrics as m
from .config import Settings
from .metrics_stage import MetricsStage
from .sinks.raw_events import APP_KINDS, TABLES, RawEventsSink
from .sinks.retry import retry
from .sinks.writer import ClickHouseWriter
from .storage.clickhouse import stored_offsets, table_rows
from .storage.migrations import migrate
from .transforms.validate import Validator

log = logging.getLogger("aipulse.pipeline")

# Event ids remembered to keep an application's re-sent duplicates out of the raw tables (older
# ones are collapsed by the tables' ReplacingMergeTree key). Only the raw insert uses this set:
# window counts must decide the same way on every replay, so the aggregator dedups by itself
# within an offset block (an in-memory set would decide differently after a restart).
RECENT_IDS_MAX = 200_000
TABLE_SAMPLE_EVERY_S = 30.0
DLQ_TRUNCATED_BYTES = 64 * 1024  # what is kept of a dead letter too big for the DLQ topic

# When the worker runs with the cyclic collector off (worker.py), the pipeline collects between
# batches, now and then: the young generations every few seconds (a collection walks every
# object still alive, and between batches those are mostly the batch in flight: every batch
# cost as much as 15 % of the loop's time), everything once a minute (cycles that got old).
GC_YOUNG_EVERY_S = 5.0
GC_FULL_EVERY_S = 60.0

RAW_TABLES = tuple(t for t, _cols in TABLES.values())
DlqSend = Callable[[bytes | None, bytes | None, list[tuple[str, bytes]]], Awaitable[None]]


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None  # the Kafka record timestamp, epoch ms (validation's clock)


class Pipeline:
    """One lifecycle: ``start()`` then ``process()`` any number of times, then ``stop()``."""

    def __init__(self, settings: Settings, dlq_send: DlqSend, topic: str | None = None):
        self.settings = settings
        self.topic = topic or settings.topic
        self.validator = Validator(settings)
        self._dlq_send = dlq_send
        # One writer for every sink: a few connections, so a batch's tables go in at once.
        self.writer = ClickHouseWriter(settings)
        self.raw_sink = RawEventsSink(self.writer, self.topic)
        self._stored_upto: dict[int, dict[str, int]] = {}  # partition -> raw table -> highest stored offset
        self._recent_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.metrics = None  # the window-metrics stage, made in start()
        self._tables_sampled_at = float("-inf")
        self._gc_full_at = self._gc_young_at = time.monotonic()
        # The last batch's writes, in flight: (task, {partition: ackable}, still_owned).
        self._inflight: tuple[asyncio.Future, dict[int, int], Callable | None] | None = None
        self._writes_landed = threading.Event()  # set when no write is in flight (reads wait)
        self._writes_landed.set()
        self._started = False
        self._start_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and migrate; safe twice, and from two tasks at once (the batch source, and
        the worker before it starts the alert evaluator, which reads the migrated tables)."""
        async with self._start_lock:
            if self._started:
                return
            await self.writer.start()
            await self.writer.run(self._migrate, "connect to ClickHouse and migrate")
            self.metrics = MetricsStage(self.settings, self.topic, self._run_sql, writer=self.writer)
            self._started = True

    async def stop(self) -> None:
        """Flushes the writes in flight (their offsets are not acked: the caller is stopping);
        safe without start and safe twice."""
        if self._inflight is not None:
            try:
                await self.flush()
            except Exception:
                log.exception("writes in flight at stop failed (they are replayed at the next start)")
        self._started = False
        if self.metrics is not None:
            await self.metrics.stop()
        await self.raw_sink.stop()
        await self.writer.stop()

    def _migrate(self, client) -> None:
        applied = migrate(client, self.settings)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))

    def _in_thread(self, fn, *args):
        """A retry-able call of ``fn(*args)`` on one of the writer's threads."""
        writer = self.writer

        def call():
            return writer._call(lambda _client: fn(*args))

        return call

    def _run_sql(self, fn):
        """Run fn(client) with this thread's client (called on the writer's threads), once the
        writes in flight have landed: a read must see the previous batch's rows, as it would
        have before the writes overlapped the next batch (the writer has >= 2 threads)."""
        self._writes_landed.wait()
        return fn(self.writer.client())

    # -- partitions ----------------------------------------------------------------------
    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._stored_upto.pop(p, None)
        if self.metrics is not None:
            self.metrics.revoke(partitions)

    def _load_stored_upto(self, partitions: list[int]) -> None:
        """Per partition, the highest offset already stored in EACH raw table.

        Per table, not across them: the tables are written by separate inserts, so a
        worker that died between two of them has stored a batch in some tables only; its
        replay must still write the others (a max across tables skipped them for good)."""
        new = [p for p in partitions if p not in self._stored_upto]
        if not new:
            return
        self._writes_landed.wait()
        self._stored_upto.update(stored_offsets(self.writer.client(), self.settings.database, self.topic,
                                                RAW_TABLES, new))

    def _stored(self, partition: int, table: str | None = None) -> int:
        """Highest stored offset of the partition in ``table`` (None: in any raw table).

        Any table will do for dead letters: a batch sends its letters before its first raw
        insert, so a raw row at or past an offset means that offset's letter was delivered."""
        per_table = self._stored_upto.get(partition)
        if not per_table:
            return -1
        return per_table[table] if table is not None else max(per_table.values())

    # -- the batch -----------------------------------------------------------------------
    async def process(self, batch: list, still_owned=None) -> dict[int, int]:
        """``batch``: records with .partition, .offset, .key, .value (aiokafka's ConsumerRecord or
        :class:`Message`). ``still_owned(partition)`` says whether the partition is still under
        the epoch the batch was fetched in (sources/kafka_batch.py); None: always."""
        if not batch:
            return {}
        crashpoints.reached("after_fetch")
        self._collect_garbage()
        m.BATCH_SIZE.observe(len(batch))
        m.CONSUMED.labels(self.topic).inc(len(batch))
        partitions = sorted({msg.partition for msg in batch})
        await retry(self._in_thread(self._load_stored_upto, partitions), "read stored offsets",
                    self.settings.insert_retry_max_s)
        # Judged against each record's Kafka timestamp: a replay reaches the same verdicts.
        valid, rejected = self.validator.check_records(batch, time.time())

        # Dead letters first: once they are on the DLQ topic, their offsets may be acked.
        # (A rejected offset at or below a stored raw row was handled by an earlier run.)
        fresh_rejects = [(msg, r) for msg, r in rejected if msg.offset > self._stored(msg.partition)
                         and (still_owned is None or still_owned(msg.partition))]
        if fresh_rejects:
            # One list across retries: a retry re-sends only the letters not yet delivered.
            await retry(lambda: self._send_dead_letters(fresh_rejects), "send to the dead-letter topic",
                        self.settings.insert_retry_max_s)
            crashpoints.reached("after_dlq_send")

        # Raw events: skip what a previous run already stored in that event's table (a replay).
        to_store = []
        in_batch: set[str] = set()
        for p, o, ev in valid:
            if o <= self._stored(p, TABLES[ev.kind][0]):
                continue
            if ev.event_id in self._recent_ids or ev.event_id in in_batch:
                m.DUPLICATES.inc()
                continue
            in_batch.add(ev.event_id)
            to_store.append((p, o, ev))
        self._maybe_sample_tables()
        last = {}
        for msg in batch:
            last[msg.partition] = max(last.get(msg.partition, -1), msg.offset)
        # The SDK's ledger (sdk_stats) is stored raw; only application events make windows.
        app_events = [t for t in valid if t[2].kind in APP_KINDS]
        rows, progress, ackable = await self.metrics.compute(app_events, last, self._in_thread, still_owned)
        # This batch's writes (raw tables at once, beside window then progress rows) start once
        # the previous batch's have landed, and run on while the caller fetches the next batch.
        done = await self.flush()
        self._start_writes(to_store, rows, progress, ackable, still_owned)
        return done

    def _start_writes(self, to_store, rows, progress, ackable, still_owned) -> None:
        async def write() -> None:
            nonlocal to_store, rows, progress
            if still_owned is not None:
                # Checked as the writes start (the previous batch's have landed; this worker may
                # have been frozen meanwhile): what a partition's new owner writes too, or a
                # revoked epoch computed, is not written here.
                to_store = [t for t in to_store if still_owned(t[0])]
                rows = {t: [r for r in rs if still_owned(r["partition"])] for t, rs in rows.items()}
                progress = [r for r in progress if still_owned(r["partition"])]
            # Remembered only what is written (before the first await, so the next batch's dedup
            # sees them): an event skipped for a revoked partition is re-read (by its next owner,
            # maybe this worker) and must not be taken for a duplicate then.
            for _p, _o, ev in to_store:
                self._remember(ev.event_id)
            stored = {}
            if to_store:
                stored, _ = await asyncio.gather(self.raw_sink.write(to_store, self._note_stored),
                                                 self.metrics.write(rows, progress))
            else:
                await self.metrics.write(rows, progress)
            for table, n in stored.items():
                m.STORED.labels(table).inc(n)

        self._writes_landed.clear()
        task = asyncio.ensure_future(write())
        task.add_done_callback(lambda _t: self._writes_landed.set())
        self._inflight = (task, ackable, still_owned)

    async def flush(self) -> dict[int, int]:
        """Wait for the writes in flight; returns their ackable offsets ({} when none), less
        partitions revoked since their batch was fetched (their state is gone; not ours to ack)."""
        if self._inflight is None:
            return {}
        task, ackable, still_owned = self._inflight
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                task.cancel()
            self._inflight = None
            self._writes_landed.set()
            raise
        self._inflight = None
        task.result()  # a write that failed for good ends the batch loop (the process replays)
        if still_owned is None:
            return dict(ackable)
        return {p: o for p, o in ackable.items() if still_owned(p)}

    def _note_stored(self, table: str, upto: dict[int, int]) -> None:
        for p, off in upto.items():
            # Only partitions still known: one revoked while this insert was in flight must be
            # read again from ClickHouse when it comes back (its new owner stored more since);
            # re-adding it here left a stale, lower offset and the comeback re-inserted rows.
            per_table = self._stored_upto.get(p)
            if per_table is None:
                continue
            if off > per_table[table]:
                per_table[table] = off

    def _collect_garbage(self) -> None:
        if gc.isenabled():
            return  # the interpreter's own schedule (tests, an embedding application)
        now = time.monotonic()
        if now - self._gc_full_at >= GC_FULL_EVERY_S:
            gc.collect()
            self._gc_full_at = self._gc_young_at = now
        elif now - self._gc_young_at >= GC_YOUNG_EVERY_S:
            gc.collect(1)
            self._gc_young_at = now

    def _maybe_sample_tables(self) -> None:
        """Refresh the table-size gauges now and then (a cheap system.parts read, off the hot path)."""
        now = time.monotonic()
        if now - self._tables_sampled_at < TABLE_SAMPLE_EVERY_S:
            return
        self._tables_sampled_at = now
        db = self.settings.database

        def sample(client):
            for table, n in table_rows(client, db):
                m.TABLE_ROWS.labels(table).set(n)

        self.writer.submit(sample)  # off the hot path; a failed sample only leaves the gauge stale

    def _remember(self, event_id: str) -> None:
        self._recent_ids[event_id] = None
        if len(self._recent_ids) > RECENT_IDS_MAX:
            self._recent_ids.popitem(last=False)

    async def _send_dead_letters(self, rejected: list[tuple[Message, str]]) -> None:
        """Send and remove from ``rejected`` one by one (so a retry resumes after the last delivered)."""
        while rejected:
            msg, reason = rejected[0]
            headers = [
                ("aipulse-reason", reason.encode("utf-8", errors="replace")[:1000]),
                ("aipulse-source", f"{self.topic}/{msg.partition}/{msg.offset}".encode()),
            ]
            try:
                await self._dlq_send(msg.key, msg.value, headers)
            except Exception as err:
                if "TooLarge" not in type(err).__name__:
                    raise  # retried by the caller with backoff
                # The DLQ topic refuses a message this big (its limit is lower than the source
                # topic's): keep the reason, the source position and the first bytes, say so, and
                # move on; retrying forever would stop the partition.
                value = msg.value or b""
                headers.append(("aipulse-truncated", f"original {len(value)} bytes".encode()))
                await self._dlq_send(msg.key, value[:DLQ_TRUNCATED_BYTES], headers)
            rejected.pop(0)
            m.DEAD_LETTERED.labels(_reason_label(reason)).inc()


def _reason_label(reason: str) -> str:
    """A low-cardinality label for the DLQ counter (the full reason travels in the header)."""
    if reason.startswith("not JSON"):
        return "not_json"
    if reason.startswith("message of"):
        return "oversized"
    if reason.startswith("kind must"):
        return "unknown_kind"
    if reason.startswith("ts is"):
        return "ts_out_of_range"
    if reason.startswith("empty"):
        return "empty"
    return "invalid_fields"

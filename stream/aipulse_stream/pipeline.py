"""The worker's batch pipeline, independent of Faust: validate, dead-letter, store, aggregate.

``process(batch)`` takes the messages of one batch (any partitions, in offset order per
partition) and returns, per partition, the highest offset that may now be acked. It returns
only after everything up to that offset is durably stored; storage failures are retried with
backoff inside (the batch is held, so nothing unstored is ever committed)::

    pipeline = Pipeline(settings, dlq_send=send)
    await pipeline.start()                      # connects, applies migrations
    ackable = await pipeline.process(messages)  # {partition: offset}

Window metrics (transforms/windows.py) write each window's contribution per (partition,
offset block) as a row replaced on replay; offsets are acked only up to complete, stored
blocks, so a restarted worker recomputes the open block from its start (see docs/architecture.md).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Awaitable, Callable

from . import crashpoints
from . import selfmetrics as m
from .config import Settings
from .metrics_stage import MetricsStage
from .sinks.raw_events import APP_KINDS, TABLES, column_names, rows_by_table
from .sinks.retry import retry
from .storage.clickhouse import connect
from .storage.migrations import migrate
from .transforms.validate import Rejected, Validator

log = logging.getLogger("aipulse.pipeline")

# Event ids remembered to keep an application's re-sent duplicates out of the raw tables (older
# ones are collapsed by the tables' ReplacingMergeTree key). Only the raw insert uses this set:
# window counts must decide the same way on every replay, so the aggregator dedups by itself
# within an offset block (an in-memory set would decide differently after a restart).
RECENT_IDS_MAX = 200_000
TABLE_SAMPLE_EVERY_S = 30.0
DLQ_TRUNCATED_BYTES = 64 * 1024  # what is kept of a dead letter too big for the DLQ topic

RAW_TABLES = tuple(t for t, _cols in TABLES.values())
DlqSend = Callable[[bytes | None, bytes | None, list[tuple[str, bytes]]], Awaitable[None]]


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Pipeline:
    """One lifecycle: ``start()`` then ``process()`` any number of times, then ``stop()``."""

    def __init__(self, settings: Settings, dlq_send: DlqSend, topic: str | None = None):
        self.settings = settings
        self.topic = topic or settings.topic
        self.validator = Validator(settings)
        self._dlq_send = dlq_send
        # clickhouse-connect clients are not for concurrent use: one thread owns the client,
        # and blocking HTTP calls stay off the event loop (Faust's heartbeats keep running).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aipulse-ch")
        self._client = None
        self._stored_upto: dict[int, dict[str, int]] = {}  # partition -> raw table -> highest stored offset
        self._recent_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.metrics = None  # the window-metrics stage, made in start()
        self._tables_sampled_at = float("-inf")
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        await retry(self._in_thread(self._connect_and_migrate), "connect to ClickHouse and migrate",
                    self.settings.insert_retry_max_s)
        self.metrics = MetricsStage(self.settings, self.topic, self._run_sql)
        self._started = True

    async def stop(self) -> None:
        """Safe without start and safe twice."""
        self._started = False
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, client.close)
            except Exception:
                pass
        self._executor.shutdown(wait=False)

    def _connect_and_migrate(self) -> None:
        client = connect(self.settings)
        applied = migrate(client, self.settings)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        self._client = client


    def _in_thread(self, fn, *args):
        loop = asyncio.get_running_loop()

        async def call():
            return await loop.run_in_executor(self._executor, fn, *args)

        return call

    def _run_sql(self, fn):
        """Run fn(client) on the ClickHouse thread (used by the metrics stage's lookups)."""
        return fn(self._client)

    # -- partitions ----------------------------------------------------------------------
    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._stored_upto.pop(p, None)
        if self.metrics is not None:
            self.metrics.revoke(partitions)

    def _load_stored_upto(self, partitions: list[int]) -> None:
        """Per partition, the highest offset already stored in EACH raw table.

        Per table, not across them: the tables are written one insert after another, so a
        worker that died between two of them has stored a batch in some tables only; its
        replay must still write the others (a max across tables skipped them for good)."""
        new = [p for p in partitions if p not in self._stored_upto]
        if not new:
            return
        db = self.settings.database
        plist = ",".join(str(int(p)) for p in new)
        sql = " UNION ALL ".join(
            f"SELECT '{t}', _partition, max(_offset) FROM {db}.{t} WHERE _topic = {{topic:String}} "
            f"AND _partition IN ({plist}) GROUP BY _partition"
            for t in RAW_TABLES
        )
        found: dict[int, dict[str, int]] = {p: dict.fromkeys(RAW_TABLES, -1) for p in new}
        for table, p, off in self._client.query(sql, parameters={"topic": self.topic}).result_rows:
            found[int(p)][table] = int(off)
        self._stored_upto.update(found)

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
        m.BATCH_SIZE.observe(len(batch))
        m.CONSUMED.labels(self.topic).inc(len(batch))
        partitions = sorted({msg.partition for msg in batch})
        await retry(self._in_thread(self._load_stored_upto, partitions), "read stored offsets",
                    self.settings.insert_retry_max_s)
        now = time.time()
        valid = []
        rejected = []
        for msg in batch:
            result = self.validator.check(msg.value, now)
            if isinstance(result, Rejected):
                rejected.append((msg, result.reason))
            else:
                valid.append((msg.partition, msg.offset, result))

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
        if to_store:
            for table, rows in rows_by_table(to_store, self.topic).items():
                if still_owned is not None:
                    # Checked before each write: a worker frozen past its session timeout in the
                    # previous insert must not write what the partition's new owner writes too.
                    rows = [r for r in rows if still_owned(r[-2])]
                    if not rows:
                        continue
                await retry(self._in_thread(self._insert, table, rows), f"insert into {table}",
                            self.settings.insert_retry_max_s,
                            on_failure=lambda _e, t=table: m.INSERT_FAILURES.labels(t).inc())
                m.STORED.labels(table).inc(len(rows))
                for r in rows:  # remembered once written: rows skipped above are re-read, not duplicates
                    self._remember(r[0])
                for r in rows:  # the source columns close each row: _topic, _partition, _offset
                    per_table = self._stored_upto.setdefault(r[-2], dict.fromkeys(RAW_TABLES, -1))
                    if r[-1] > per_table[table]:
                        per_table[table] = r[-1]
                crashpoints.reached(f"after_raw_insert:{table}")

        self._maybe_sample_tables()
        last = {}
        for msg in batch:
            last[msg.partition] = max(last.get(msg.partition, -1), msg.offset)
        # The SDK's ledger (sdk_stats) is stored above; only application events make windows.
        app_events = [t for t in valid if t[2].kind in APP_KINDS]
        return await self.metrics.process(app_events, last, self._in_thread, still_owned)

    def _maybe_sample_tables(self) -> None:
        """Refresh the table-size gauges now and then (a cheap system.parts read, off the hot path)."""
        now = time.monotonic()
        if now - self._tables_sampled_at < TABLE_SAMPLE_EVERY_S:
            return
        self._tables_sampled_at = now
        db = self.settings.database

        def sample():
            rows = self._client.query(
                "SELECT table, sum(rows) FROM system.parts WHERE database = {db:String} AND active GROUP BY table",
                parameters={"db": db}).result_rows
            for table, n in rows:
                m.TABLE_ROWS.labels(table).set(n)

        fut = self._executor.submit(sample)
        fut.add_done_callback(lambda f: f.exception())  # a failed sample only leaves the gauge stale

    def _remember(self, event_id: str) -> None:
        self._recent_ids[event_id] = None
        if len(self._recent_ids) > RECENT_IDS_MAX:
            self._recent_ids.popitem(last=False)

    def _insert(self, table: str, rows: list[list]) -> None:
        started = time.perf_counter()
        self._client.insert(f"{self.settings.database}.{table}", rows, column_names=column_names(table))
        m.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)

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

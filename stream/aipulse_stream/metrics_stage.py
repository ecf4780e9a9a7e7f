"""The window-metrics stage of the pipeline: join, aggregate, store contribution rows, say what may be acked.

Called by Pipeline.process() after the batch's raw events are stored (the join looks up
interactions in the raw table, restricted to offsets before the feedback's own)::

    stage = MetricsStage(settings, topic, run_sql, writer=writer)   # writer: sinks/writer.py
    ackable = await stage.process(valid, last_offsets, in_thread)   # {partition: offset}
    await stage.stop()                                               # safe twice; holds nothing

Each drain of the aggregator goes to ClickHouse as ONE insert: the hourly and daily rollup
views are exact only when they see a block's full state in one insert (docs/metrics.md).
"""
from __future__ import annotations

import time

from . import selfmetrics as m
from .config import Settings
from .sinks.retry import retry
from .transforms.join import JoinResolver, clickhouse_lookup
from .transforms.windows import WindowAggregator, block_of, load_watermark


class MetricsStage:
    def __init__(self, settings: Settings, topic: str, run_sql, writer=None):
        self.settings = settings
        self.writer = writer  # the pipeline's ClickHouseWriter: window and progress rows go through it
        self.topic = topic
        self.agg = WindowAggregator(settings, topic)
        self._run_sql = run_sql  # run_sql(fn) -> fn(client), on the ClickHouse thread
        db = settings.database
        self.resolver = JoinResolver(
            settings, lookup=lambda partition, ids: run_sql(lambda c: clickhouse_lookup(c, db, topic)(partition, ids))
        )
        self._started: set[int] = set()
        self._late_seen = 0
        self._orphaned_seen = 0

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self.agg.forget(p)
            self._started.discard(p)

    def _start_partitions(self, first_offsets: dict[int, int]) -> None:
        db = self.settings.database
        for p, off in first_offsets.items():
            block = block_of(off, self.settings)
            wm = self._run_sql(lambda c: load_watermark(c, db, self.topic, p, block))
            self.agg.set_start(p, block, wm)
            self._started.add(p)

    async def _insert(self, rows: dict[str, list[dict]], progress: list[dict]) -> None:
        """Window rows, the top spenders, then progress rows: each ONE insert (the rollups need a
        block whole; spend_top_window keeps metrics_window's identity and version discipline,
        transforms/spend_top.py)."""
        for table, items, point in (("metrics_window", rows.get("metrics_window"), "after_window_insert"),
                                    ("spend_top_window", rows.get("spend_top_window"), None),
                                    ("partition_progress", progress, "after_progress_insert")):
            if not items:
                continue
            cols = list(items[0])
            await self.writer.insert(table, [[r[k] for k in cols] for r in items], cols, crash_point=point)

    async def stop(self) -> None:
        """Safe without start and twice: the stage holds no rows (compute() hands them out)."""
        return None

    async def process(self, valid: list, last: dict[int, int], in_thread, still_owned=None) -> dict[int, int]:
        """compute() then write(): the batch's rows stored, what may be acked returned."""
        rows, progress, ackable = await self.compute(valid, last, in_thread, still_owned)
        await self.write(rows, progress)
        return ackable

    async def write(self, rows: dict[str, list[dict]], progress: list[dict]) -> None:
        """Store a drain's rows (insert ``compute``'s output of one batch, in batch order)."""
        if any(rows.values()) or progress:
            await self._insert(rows, progress)

    async def compute(self, valid: list, last: dict[int, int], in_thread,
                      still_owned=None) -> tuple[dict[str, list[dict]], list[dict], dict[int, int]]:
        """Join and aggregate one batch: ({table: window rows}, progress rows, {partition: ackable
        offset}); the offsets may be acked once all of them are stored (write())."""
        first: dict[int, int] = {}
        for p, o, _ in valid:
            if p not in self._started and p not in first:
                first[p] = o
        if first:
            await retry(in_thread(self._start_partitions, first), "load partition watermarks",
                        self.settings.insert_retry_max_s)
        if valid:
            joined = await retry(in_thread(self.resolver.resolve, valid), "join feedback to interactions",
                                 self.settings.insert_retry_max_s)
        if still_owned is not None:
            # Partition epochs: a partition revoked during one of the awaits above lost its state
            # (revoke); counting the rest of its batch would rebuild a block from its middle. No
            # await from here to the drain, so what is drained was computed under one epoch.
            gone = {p for p in last if not still_owned(p)}
            if gone:
                valid = [v for v in valid if v[0] not in gone]
                last = {p: o for p, o in last.items() if p not in gone}
                self.revoke(gone)
        if valid:
            add = self.agg.add
            for p, o, ev in valid:
                add(p, o, ev, joined.get(ev.event_id))
        rows = self.agg.drain_rows()
        progress = self.agg.drain_progress()
        # Window rows by table, in insert order (write()).
        rows = {"metrics_window": rows, "spend_top_window": self.agg.spend.drain_rows(self.topic, self.settings.window_s)}
        self._export_counters()
        out = {}
        for p in last:
            a = self.agg.ackable(p)
            if a is not None:
                out[p] = a
        return rows, progress, out

    def _export_counters(self) -> None:
        if self.agg.late_total > self._late_seen:
            m.LATE.inc(self.agg.late_total - self._late_seen)
            self._late_seen = self.agg.late_total
        if self.agg.orphaned_total > self._orphaned_seen:
            m.ORPHANED.inc(self.agg.orphaned_total - self._orphaned_seen)
            self._orphaned_seen = self.agg.orphaned_total
        marks = [w for w in (self.agg.watermark(p) for p in self._started) if w]
        if marks:
            # Window lag: now minus the end of the newest window that lateness has closed.
            closed_end = max(marks) - self.settings.allowed_lateness_s
            closed_end -= closed_end % self.settings.window_s
            m.WINDOW_LAG.set(max(0.0, time.time() - closed_end))

"""The window-metrics stage of the pipeline: join, aggregate, store contribution rows, say what may be acked.

Called by Pipeline.process() after the batch's raw events are stored (the join looks up
interactions in the raw table, restricted to offsets before the feedback's own)::

    stage = MetricsStage(settings, topic, run_sql)
    ackable = await stage.process(valid, last_offsets, in_thread)   # {partition: offset}

Each drain of the aggregator goes to ClickHouse as ONE insert: the hourly and daily rollup
views are exact only when they see a block's full state in one insert (docs/metrics.md).
"""
from __future__ import annotations

import time

from . import crashpoints
from . import selfmetrics as m
from .config import Settings
from .sinks.retry import retry
from .transforms.join import JoinResolver, clickhouse_lookup
from .transforms.windows import WindowAggregator, block_of, load_watermark


class MetricsStage:
    def __init__(self, settings: Settings, topic: str, run_sql):
        self.settings = settings
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

    def _insert(self, rows: list[dict], progress: list[dict], spend: list[dict] = ()) -> None:
        db = self.settings.database
        # spend_top_window: same identity and version discipline as metrics_window (transforms/spend_top.py)
        for table, items in (("metrics_window", rows), ("spend_top_window", spend), ("partition_progress", progress)):
            if not items:
                continue
            cols = list(items[0])
            started = time.perf_counter()
            self._run_sql(lambda c: c.insert(f"{db}.{table}", [[r[k] for k in cols] for r in items], column_names=cols))
            m.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
            if table != "spend_top_window":
                crashpoints.reached("after_window_insert" if table == "metrics_window" else "after_progress_insert")

    async def process(self, valid: list, last: dict[int, int], in_thread, still_owned=None) -> dict[int, int]:
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
        spend = self.agg.spend.drain_rows(self.topic, self.settings.window_s)
        if rows or progress:
            await retry(in_thread(self._insert, rows, progress, spend), "insert window rows",
                        self.settings.insert_retry_max_s,
                        on_failure=lambda _e: m.INSERT_FAILURES.labels("metrics_window").inc())
        self._export_counters()
        out = {}
        for p in last:
            a = self.agg.ackable(p)
            if a is not None:
                out[p] = a
        return out

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

"""A worker loop in miniature, for the metrics tests: batches, crashes and restarts.

It follows the protocol the real worker follows (transforms/windows.py docstring), against
either an in-memory model of the ClickHouse tables (``MemoryStore``: ReplacingMergeTree
keeps the highest version per identity) or a real engine (``ClickHouseStore``: chDB through
clickhouse-connect).
"""
from __future__ import annotations

import random
from collections import defaultdict

from aipulse.contract import Interaction
from aipulse_stream.transforms.join import JoinResolver, clickhouse_lookup, ts_ms
from aipulse_stream.transforms.windows import WindowAggregator, block_of, load_watermark

TOPIC = "aipulse.events"
IDENTITY = ("service", "feature", "model", "variant", "window_start", "topic", "partition", "block")


class MemoryStore:
    """Replacing semantics of metrics_window / partition_progress, plus the raw interactions."""

    def __init__(self):
        self.windows: dict[tuple, dict] = {}
        self.progress: dict[tuple, dict] = {}
        self.raw: list[tuple[int, int, Interaction]] = []
        self.inserts = 0

    def insert_raw(self, batch):
        self.raw.extend((p, o, e) for p, o, e in batch if isinstance(e, Interaction))

    def insert_rows(self, rows, progress):
        self.inserts += 1
        for r in rows:
            ident = tuple(r[c] for c in IDENTITY)
            old = self.windows.get(ident)
            if old is None or r["version"] >= old["version"]:
                self.windows[ident] = r
        for r in progress:
            ident = (r["topic"], r["partition"], r["block"])
            old = self.progress.get(ident)
            if old is None or r["version"] >= old["version"]:
                self.progress[ident] = r

    def watermark(self, partition, block):
        blocks = [b for (t, p, b) in self.progress if p == partition and b < block]
        if not blocks:
            return None
        wm = self.progress[(TOPIC, partition, max(blocks))]["watermark_ms"]
        return wm / 1000 if wm else None

    def lookup(self, partition, ids):
        ids = set(ids)
        return [(e.interaction_id, e.service, e.feature, e.model, e.variant, ts_ms(e.ts), p, o)
                for p, o, e in self.raw if p == partition and e.interaction_id in ids]

    def resolver(self, settings):
        return JoinResolver(settings, lookup=self.lookup)


class ClickHouseStore:
    """The same, against the real tables of a migrated database."""

    def __init__(self, client, settings):
        self.client, self.settings, self.db = client, settings, settings.database
        self.inserts = 0

    def insert_raw(self, batch):
        rows = [[e.event_id, e.interaction_id, e.ts, e.service, e.feature, e.model, e.variant,
                 e.latency_ms, p, o] for p, o, e in batch if isinstance(e, Interaction)]
        if rows:
            self.client.insert(f"{self.db}.interactions", rows, column_names=[
                "event_id", "interaction_id", "ts", "service", "feature", "model", "variant",
                "latency_ms", "_partition", "_offset"])

    def insert_rows(self, rows, progress):
        self.inserts += 1
        if rows:
            cols = list(rows[0])
            self.client.insert(f"{self.db}.metrics_window", [[r[c] for c in cols] for r in rows], column_names=cols)
        if progress:
            cols = list(progress[0])
            self.client.insert(f"{self.db}.partition_progress", [[r[c] for c in cols] for r in progress],
                               column_names=cols)

    def watermark(self, partition, block):
        return load_watermark(self.client, self.db, TOPIC, partition, block)

    def resolver(self, settings):
        return JoinResolver(settings, lookup=clickhouse_lookup(self.client, self.db))


def run_stream(records, settings, store, *, batch_size=700, crashes=0, seed=1, cold_restarts=True):
    """Consume ``records`` like the worker, crashing ``crashes`` times at random moments.

    A crash loses the aggregator (and, with ``cold_restarts``, the join cache); the
    restart resumes every partition at its committed offset, which is always a block start.
    Returns the number of restarts done.
    """
    rng = random.Random(seed)
    by_part: dict[int, list] = defaultdict(list)
    for p, o, e in records:
        by_part[p].append((p, o, e))
    committed = {p: 0 for p in by_part}           # next offset to read, per partition
    total_batches = max(len(v) for v in by_part.values()) * 2 // batch_size + 1  # takes average batch_size/2
    crash_at = sorted(rng.sample(range(1, max(2, total_batches)), min(crashes, max(1, total_batches - 1))))
    batch_no = 0
    restarts = 0
    resolver = store.resolver(settings)
    while True:
        agg = WindowAggregator(settings, TOPIC)
        if cold_restarts:
            resolver = store.resolver(settings)
        position = {}
        for p, c in committed.items():
            assert c % settings.offset_block == 0, "commits are always block starts"
            block = block_of(c, settings)
            agg.set_start(p, block, store.watermark(p, block))
            position[p] = c
        crashed = False
        while any(position[p] < len(by_part[p]) for p in by_part):
            # One consumer batch: a slice from each partition, interleaved like a fetch.
            batch = []
            for p in sorted(by_part):
                take = rng.randrange(1, batch_size)
                batch.extend(by_part[p][position[p]: position[p] + take])
                position[p] = min(position[p] + take, len(by_part[p]))
            batch_no += 1
            joined = resolver.resolve(batch)
            for p, o, e in batch:
                agg.add(p, o, e, joined.get(e.event_id))
            mode = None
            if crash_at and batch_no == crash_at[0]:
                crash_at.pop(0)
                mode = rng.choice(("before_insert", "after_insert", "after_raw"))
            if mode == "before_insert":
                crashed = True
                break
            store.insert_raw(batch)
            if mode == "after_raw":
                crashed = True
                break
            rows, progress = agg.drain_rows(), agg.drain_progress()
            store.insert_rows(rows, progress)
            if mode == "after_insert":
                crashed = True
                break
            for p in by_part:
                a = agg.ackable(p)
                if a is not None:
                    committed[p] = a + 1
        if not crashed:
            # End of stream: the open blocks are drained already; nothing left to ack.
            return restarts
        restarts += 1


def merged(rows_by_identity: dict) -> dict[tuple, dict]:
    """Sum the stored rows per (window, key), for comparing runs."""
    out: dict[tuple, dict] = {}
    for ident, r in rows_by_identity.items():
        k = ident[:5]
        acc = out.setdefault(k, defaultdict(float))
        for c, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and c not in ("version", "partition", "block", "window_s"):
                acc[c] += v
            elif isinstance(v, dict):
                for kk, vv in v.items():
                    acc[(c, kk)] += vv
            elif c == "users":
                acc.setdefault("users_set", set()).update(v)
    return out

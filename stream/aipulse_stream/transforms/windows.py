"""Tumbling event-time windows, written as crash-exact, idempotent ClickHouse rows.

Usage (the worker; see docs/metrics.md for the whole protocol)::

    agg = WindowAggregator(settings, topic)
    # on assignment of a partition whose committed offset is c:
    block = block_of(c, settings)                     # resume at the block start
    agg.set_start(p, block, load_watermark(client, db, topic, p, block))
    consumer.seek(p, block * settings.offset_block)
    # per consumed batch:
    joined = resolver.resolve(batch)                   # transforms.join
    for p, offset, event in batch:
        agg.add(p, offset, event, joined.get(event.event_id))
    rows, progress = agg.drain_rows(), agg.drain_progress()
    insert("metrics_window", rows); insert("partition_progress", progress)
    for p in partitions: commit(p, agg.ackable(p) + 1)  # when not None

Why it is exact under crashes. Each source partition's offsets are cut into fixed blocks
(``block = offset // settings.offset_block``). A window row is the contribution of ONE block
of ONE partition to one (window, key): its identity in ClickHouse is (service, feature,
model, variant, window_start, topic, partition, block) and its ``version`` is the highest
offset counted in it. Offsets are committed only at block ends, so a restart resumes at a
block start and recomputes the block from its first offset; the recomputation is a pure
function of the offsets (events are parsed from the same bytes; the watermark at the block
start is read back from ``partition_progress``; joins follow a rule that does not depend on
timing, see transforms.join), so it reproduces, row by row, the same content for the same
version, and ``ReplacingMergeTree(version)`` keeps the most complete one. Nothing is added
twice: readers take ``FINAL`` then sum over blocks and partitions.

``drain_rows`` returns the FULL state of every (window, key) row of every block touched
since the last drain (not just the rows that changed). The 1 h / 1 d rollup views group each
inserted batch by (grain, key, partition, block); they are exact only because each insert
holds all rows of those groups (proof in docs/metrics.md and
tests/metrics/test_storage.py::test_rollup_equals_base_after_growing_reinserts).

Lateness: the watermark of a partition is the highest event ts seen on it; an event more
than ``allowed_lateness_s`` behind it is late: it only increments ``late`` in its own window
and key (it is still stored raw by the worker). All times are integer milliseconds
(``join.ts_ms``), the precision ClickHouse stores, so decisions never depend on float noise.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from aipulse.contract import Evaluation, Feedback, Interaction
from aipulse_catalog.columns import COUNT_COLUMNS, FLOAT_COLUMNS, KEY_COLUMNS
from aipulse_catalog.sketch import record

from ..config import Settings
from .join import JoinedKey, ts_ms
from .spend_top import SpendTop

ERROR_OUTCOMES = frozenset({"error", "timeout"})
FEEDBACK_COLUMNS = {
    "thumbs_up": "feedback_up",
    "thumbs_down": "feedback_down",
    "task_completed": "task_completed",
    "task_failed": "task_failed",
    "human_correction": "corrections",
    "escalation_resolved": "escalations_resolved",
}
SHADOW_SOURCE = "shadow"

# The row's integer counters and float sums (each a plain sum) come from the catalog
# (aipulse_catalog.columns, in table order); this module only decides what each one counts.
__all__ = ["COUNT_COLUMNS", "FLOAT_COLUMNS", "KEY_COLUMNS", "WindowAggregator", "block_of", "load_watermark"]
_UTC = timezone.utc


def block_of(offset: int, settings: Settings) -> int:
    return offset // settings.offset_block


def user_hash(user_id: str) -> int:
    """64-bit hash of a user id, for the ``users`` distinct-set column (UInt64)."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "little")


class _Row:
    """Mergeable state of one (window, key) within one block. Slots: one per column."""

    __slots__ = COUNT_COLUMNS + FLOAT_COLUMNS + (
        "latency", "ttft", "fallback_depth", "users", "version", "rollout_stage", "max_ts_ms", "out")

    def __init__(self):
        for c in COUNT_COLUMNS:
            setattr(self, c, 0)
        for c in FLOAT_COLUMNS:
            setattr(self, c, 0.0)
        self.latency: dict[int, int] = {}
        self.ttft: dict[int, int] = {}
        self.fallback_depth: dict[int, int] = {}
        self.users: set[int] = set()
        self.version = -1
        self.rollout_stage: float | None = None
        self.max_ts_ms = 0
        self.out: dict | None = None  # the emitted dict, reused until the row changes


class _Partition:
    """Per source partition: the open block's rows, the watermark, what is safe to ack."""

    __slots__ = ("start_block", "block", "rows", "watermark_ms", "last_offset", "events",
                 "late", "dirty", "closed", "drained_block", "seen_ids")

    def __init__(self, start_block: int, watermark_ms: int | None):
        self.start_block = start_block
        self.block = start_block
        self.rows: dict[tuple, _Row] = {}
        self.watermark_ms = watermark_ms
        self.last_offset = -1
        self.events = 0
        self.late = 0
        self.dirty = False
        # Blocks completed since the last drain: (block, rows, progress row).
        self.closed: list[tuple[int, dict, dict]] = []
        # Every block below this one is complete AND was handed out by a drain.
        self.drained_block = start_block
        # Event ids counted in the open block: a re-sent duplicate within the block is
        # dropped. Per block, so that a replay from the block start decides the same way.
        self.seen_ids: set[str] = set()


class WindowAggregator:
    """Windowed, mergeable metrics per (window, service, feature, model, variant) and block."""

    def __init__(self, settings: Settings, topic: str):
        self.settings = settings
        self.topic = topic
        self._window_ms = settings.window_s * 1000
        self._lateness_ms = settings.allowed_lateness_s * 1000
        self._block_size = settings.offset_block
        self._low_conf = settings.low_confidence_threshold
        self._parts: dict[int, _Partition] = {}
        self._progress: list[dict] = []
        self.spend = SpendTop(settings.spend_top_k)  # top spenders per window and feature (spend_top.py)
        # Self-metrics (cumulative since start; replays count again).
        self.events_total = 0
        self.late_total = 0
        self.orphaned_total = 0
        self.duplicates_skipped = 0   # offsets delivered again (already counted)
        self.duplicates_dropped = 0   # same event_id twice within one offset block

    # -- partition lifecycle -------------------------------------------------------------

    def set_start(self, partition: int, block: int, watermark: float | None) -> None:
        """(Re)start a partition at the first offset of ``block``; drops any state it had.

        ``watermark`` (epoch seconds) is the partition's watermark at the end of block - 1,
        from :func:`load_watermark`; None when nothing was recorded before this block.
        """
        wm = None if watermark is None else round(watermark * 1000)
        self._parts[partition] = _Partition(block, wm)
        self.spend.reset(partition)

    def forget(self, partition: int) -> None:
        """Drop a revoked partition's state (its unacked offsets will be replayed elsewhere)."""
        self._parts.pop(partition, None)
        self.spend.reset(partition)

    def watermark(self, partition: int) -> float | None:
        part = self._parts.get(partition)
        return None if part is None or part.watermark_ms is None else part.watermark_ms / 1000

    # -- the per-event path --------------------------------------------------------------

    def add(self, partition: int, offset: int, event, joined: JoinedKey | None = None) -> bool:
        """Count one event; returns False when not counted: its offset was already counted
        (redelivery), or its event_id already was within this offset block (a re-sent
        duplicate; duplicates in different blocks are both counted, deterministically; the
        raw tables keep one copy either way). Do not drop duplicates before calling this
        with an in-memory set: that decides differently after a restart or a rebalance."""
        part = self._parts.get(partition)
        block = offset // self._block_size
        if part is None:  # no set_start: start where the stream starts, with no watermark
            part = self._parts[partition] = _Partition(block, None)
        if offset <= part.last_offset or block < part.block:
            self.duplicates_skipped += 1
            return False
        if block != part.block:
            self._close_block(partition, part, block)
        part.last_offset = offset
        if event.event_id in part.seen_ids:
            self.duplicates_dropped += 1
            return False
        part.seen_ids.add(event.event_id)
        part.events += 1
        part.dirty = True
        self.events_total += 1

        t = ts_ms(event.ts)
        wm = part.watermark_ms
        late = wm is not None and t < wm - self._lateness_ms
        if wm is None or t > wm:
            part.watermark_ms = t
        window = t - t % self._window_ms

        if isinstance(event, Interaction):
            key = (window, event.service, event.feature, event.model, event.variant)
        elif joined is not None:
            key = (window, joined.service, joined.feature, joined.model, joined.variant)
        else:
            key = (window, event.service, "", "", "")
        row = part.rows.get(key)
        if row is None:
            row = part.rows[key] = _Row()
        row.version = offset
        row.out = None
        if t > row.max_ts_ms:
            row.max_ts_ms = t
        if late:
            row.late += 1
            part.late += 1
            self.late_total += 1
        elif isinstance(event, Interaction):
            self._add_interaction(row, event)
            self.spend.add(partition, block, offset, key, event)
        elif joined is None:
            row.orphaned += 1
            self.orphaned_total += 1
        elif isinstance(event, Feedback):
            column = FEEDBACK_COLUMNS.get(event.feedback_type)
            if column is not None:
                setattr(row, column, getattr(row, column) + 1)
        elif isinstance(event, Evaluation):
            if event.source == SHADOW_SOURCE:
                row.shadow_pairs += 1
                if event.correct is False:
                    row.shadow_disagreements += 1
            else:
                if event.correct is not None:
                    row.evaluated += 1
                    if event.correct:
                        row.correct += 1
                if event.score is not None:
                    row.eval_scored += 1
                    row.eval_score_sum += event.score
        return True

    def _add_interaction(self, row: _Row, ev: Interaction) -> None:
        if ev.shadow:  # never user traffic: no requests, latency, cost or users
            row.shadow_requests += 1
            return
        row.requests += 1
        outcome = ev.outcome
        if outcome in ERROR_OUTCOMES:
            row.errors += 1
            if outcome == "timeout":
                row.timeouts += 1
        elif outcome == "escalated":
            row.escalations += 1
        elif outcome == "refused":
            row.refused += 1
        elif outcome == "rejected_input":
            row.rejected_input += 1
        elif outcome == "rejected_output":
            row.rejected_output += 1
        depth = ev.fallback_depth
        if depth > 0:
            row.fallbacks += 1
            row.fallback_depth[depth] = row.fallback_depth.get(depth, 0) + 1
        elif outcome == "fallback":  # a fallback of unreported depth still is one
            row.fallbacks += 1
        if ev.confidence is not None and ev.confidence < self._low_conf:
            row.low_confidence += 1
        if ev.cached:
            row.cached += 1
        row.input_tokens += ev.input_tokens
        row.output_tokens += ev.output_tokens
        if ev.cost_usd is None:
            row.cost_missing += 1
            if ev.input_tokens or ev.output_tokens:  # tokens but no price: under-reported cost
                row.unpriced_requests += 1
        else:
            row.cost_usd += ev.cost_usd
        x = ev.latency_ms
        row.latency_sum_ms += x
        record(row.latency, x)
        x = ev.ttft_ms
        if x is not None:
            row.ttft_count += 1
            row.ttft_sum_ms += x
            record(row.ttft, x)
        if ev.user_id:
            row.users.add(user_hash(ev.user_id))
        if ev.rollout_stage is not None and (row.rollout_stage is None or ev.rollout_stage > row.rollout_stage):
            row.rollout_stage = ev.rollout_stage

    # -- output --------------------------------------------------------------------------

    def _close_block(self, partition: int, part: _Partition, new_block: int) -> None:
        if part.dirty:  # else its final state went out with the previous drain
            part.closed.append((part.block, part.rows, self._progress_row(partition, part)))
        part.block = new_block
        part.rows = {}
        part.events = 0
        part.late = 0
        part.dirty = False
        part.seen_ids = set()

    def _progress_row(self, partition: int, part: _Partition) -> dict:
        return {
            "topic": self.topic, "partition": partition, "block": part.block,
            "version": part.last_offset, "watermark_ms": part.watermark_ms or 0,
            "events": part.events, "late": part.late,
        }

    def _row_dict(self, partition: int, block: int, key: tuple, row: _Row) -> dict:
        # Rows of a touched block are re-sent in full at every drain; most did not change.
        if row.out is not None:
            return row.out
        window, service, feature, model, variant = key
        d = {
            "service": service, "feature": feature, "model": model, "variant": variant,
            "window_start": datetime.fromtimestamp(window // 1000, _UTC),
            "topic": self.topic, "partition": partition, "block": block,
            "version": row.version, "window_s": self.settings.window_s,
        }
        for c in COUNT_COLUMNS:
            d[c] = getattr(row, c)
        for c in FLOAT_COLUMNS:
            d[c] = getattr(row, c)
        d["latency_buckets"] = dict(row.latency)
        d["ttft_buckets"] = dict(row.ttft)
        d["fallback_depth"] = dict(row.fallback_depth)
        d["users"] = sorted(row.users)
        d["rollout_stage"] = row.rollout_stage
        d["max_ts"] = datetime.fromtimestamp(row.max_ts_ms / 1000, _UTC)
        row.out = d
        return d

    def drain_rows(self) -> list[dict]:
        """Full state of every row of every block touched since the last drain.

        Grouped by (partition, block), so that a block's rows stay together in
        the insert. Also prepares :meth:`drain_progress` and advances :meth:`ackable` to
        the blocks completed so far (the worker must insert both lists before acking).
        """
        rows: list[dict] = []
        progress: list[dict] = []
        for partition in sorted(self._parts):
            part = self._parts[partition]
            for block, block_rows, prog in part.closed:
                rows.extend(self._row_dict(partition, block, k, r) for k, r in block_rows.items())
                progress.append(prog)
            part.closed = []
            if part.dirty:
                rows.extend(self._row_dict(partition, part.block, k, r) for k, r in part.rows.items())
                progress.append(self._progress_row(partition, part))
                part.dirty = False
            part.drained_block = part.block
        self._progress.extend(progress)
        return rows

    def drain_progress(self) -> list[dict]:
        """Rows for ``partition_progress`` prepared by the last :meth:`drain_rows`."""
        out, self._progress = self._progress, []
        return out

    def ackable(self, partition: int) -> int | None:
        """Highest offset safe to commit (commit this + 1): the end of the last complete,
        drained block; None when no block has completed since the partition's start."""
        part = self._parts.get(partition)
        if part is None or part.drained_block <= part.start_block:
            return None
        return part.drained_block * self._block_size - 1


def load_watermark(client, db: str, topic: str, partition: int, block: int) -> float | None:
    """The partition's watermark (epoch s) at the end of the last recorded block before
    ``block``, from ``partition_progress``; None when there is none (a fresh partition)."""
    result = client.query(
        f"SELECT watermark_ms FROM {db}.partition_progress FINAL "
        "WHERE topic = {t:String} AND partition = {p:UInt32} AND block < {b:UInt64} "
        "ORDER BY block DESC LIMIT 1",
        parameters={"t": topic, "p": partition, "b": block},
    )
    rows = result.result_rows
    if not rows or rows[0][0] == 0:
        return None
    return rows[0][0] / 1000

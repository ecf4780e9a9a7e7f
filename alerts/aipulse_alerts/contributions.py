"""The evaluator's view of window rows: per base window and key, summed columns and sketches.

Two ways in::

    store = WindowStore(window_s=10, fine_keep_ms=..., keep_ms=...)
    store.replace(merged_rows)       # rows already merged over partitions (read from ClickHouse)
    store.observe(contribution_rows) # rows of one (partition, block) each, with a version
    store.sum(start_ms, end_ms, project, sketches=True)   # group -> Agg

Contributions: a drained row is the contribution of one (partition, offset block) to a
(window, key); it is re-emitted with a higher ``version`` as its block grows, and a replay
re-emits it with the same version. The store keeps, per identity (window, key, partition,
block), the row with the highest version and sums identities per (window, key): replays and
re-emissions never add twice. A merged row (``replace``) is one identity that replaces the
window's key as a whole: the store reads ``metrics_window FINAL`` which did the same merge.

Windows older than the longest quantile rule's span are folded into chunks without latency
sketches (:meth:`fold`), so a 6 h burn-rate window costs a few hundred additions per group;
:meth:`load_chunks` fills those chunks directly from stored history at start.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from aipulse_catalog.sketch import merge_buckets
from aipulse_stream.transforms.windows import COUNT_COLUMNS, FLOAT_COLUMNS

FIELDS = COUNT_COLUMNS + FLOAT_COLUMNS
IDX = {f: i for i, f in enumerate(FIELDS)}
NF = len(FIELDS)
MERGED = ("merged",)  # the identity of a row merged over partitions by ClickHouse


def ts_ms(t) -> int:
    if isinstance(t, datetime):
        return int(round(t.timestamp() * 1000))
    return int(round(float(t) * 1000))


class Agg:
    """Summed columns of any set of window rows: counters plus latency/ttft sketch buckets."""

    __slots__ = ("v", "latency", "ttft")

    def __init__(self):
        self.v = [0.0] * NF
        self.latency: dict[int, int] = {}
        self.ttft: dict[int, int] = {}

    @classmethod
    def of_row(cls, row: dict) -> "Agg":
        a = cls()
        a.v = [float(row.get(f, 0) or 0) for f in FIELDS]
        a.latency = dict(row.get("latency_buckets") or {})
        a.ttft = dict(row.get("ttft_buckets") or {})
        return a

    def add(self, other: "Agg", sketches: bool = True) -> None:
        v = self.v
        for i, x in enumerate(other.v):
            v[i] += x
        if sketches:
            merge_buckets(self.latency, other.latency)
            merge_buckets(self.ttft, other.ttft)

    def sum(self, cols: Iterable[str]) -> float:
        return sum(self.v[IDX[c]] for c in cols)


def _key(row: dict) -> tuple:
    return (row["service"], row["feature"], row["model"], row["variant"])


class WindowStore:
    def __init__(self, window_s: int, fine_keep_ms: int, keep_ms: int, chunk_ms: int):
        self._w = int(window_s) * 1000
        self.fine_keep_ms = fine_keep_ms
        self.keep_ms = keep_ms
        self.chunk_ms = chunk_ms
        # window_ms -> key -> identity (partition, block) -> (version, Agg)
        self.contrib: dict[int, dict[tuple, dict[tuple, tuple[int, Agg]]]] = {}
        self._cache: dict[int, dict[tuple, Agg]] = {}      # summed per key, fine windows
        self.chunks: dict[int, dict[tuple, Agg]] = {}       # folded, no sketches
        self.newest_ts_ms: dict[str, int] = {}              # service ("" = any) -> newest event time
        self.rows_seen = 0
        self.too_late = 0   # rows for windows already folded away (not counted)

    def fold_horizon(self, now: float) -> int:
        cut = int(now * 1000) - self.fine_keep_ms
        return cut - cut % self.chunk_ms

    def _saw(self, row: dict) -> None:
        if row.get("max_ts") is None:
            return
        ts = ts_ms(row["max_ts"])
        for s in (row["service"], ""):
            if ts > self.newest_ts_ms.get(s, 0):
                self.newest_ts_ms[s] = ts

    def observe(self, rows: list[dict], now: float) -> int:
        """Store contribution rows (partition, block, version); returns the newest event time (ms)."""
        newest = 0
        fold_before = self.fold_horizon(now)
        for row in rows:
            w = ts_ms(row["window_start"])
            if w < fold_before:
                self.too_late += 1
                continue
            ident = (row.get("partition", 0), row.get("block", 0))
            version = int(row.get("version", 0))
            per_key = self.contrib.setdefault(w, {}).setdefault(_key(row), {})
            old = per_key.get(ident)
            if old is not None and old[0] >= version:
                continue  # a replay or an unchanged re-emission
            per_key[ident] = (version, Agg.of_row(row))
            self._cache.pop(w, None)
            self.rows_seen += 1
            self._saw(row)
            if row.get("max_ts") is not None:
                newest = max(newest, ts_ms(row["max_ts"]))
        return newest

    def replace(self, rows: list[dict], now: float) -> None:
        """Store rows merged over partitions: each replaces its (window, key) as a whole."""
        fold_before = self.fold_horizon(now)
        for row in rows:
            w = ts_ms(row["window_start"])
            if w < fold_before:
                self.too_late += 1
                continue
            self.contrib.setdefault(w, {})[_key(row)] = {MERGED: (0, Agg.of_row(row))}
            self._cache.pop(w, None)
            self.rows_seen += 1
            self._saw(row)

    def load_chunks(self, rows: list[dict]) -> None:
        """Older history, already summed per chunk (no sketches), read once at start."""
        for row in rows:
            c = ts_ms(row["window_start"])
            self.chunks.setdefault(c, {})[_key(row)] = Agg.of_row({**row, "latency_buckets": None,
                                                                     "ttft_buckets": None})
            self._saw(row)

    def window(self, w: int) -> dict[tuple, Agg] | None:
        cached = self._cache.get(w)
        if cached is not None:
            return cached
        per_key = self.contrib.get(w)
        if per_key is None:
            return None
        out = {}
        for key, idents in per_key.items():
            a = Agg()
            for _, contrib in idents.values():
                a.add(contrib)
            out[key] = a
        self._cache[w] = out
        return out

    def fold(self, now: float) -> None:
        """Fold fine windows older than the quantile horizon into chunks; drop what no rule reads."""
        horizon = self.fold_horizon(now)
        for w in [w for w in self.contrib if w < horizon]:
            win = self.window(w) or {}
            chunk = self.chunks.setdefault(w - w % self.chunk_ms, {})
            for key, a in win.items():
                c = chunk.get(key)
                if c is None:
                    c = chunk[key] = Agg()
                c.add(a, sketches=False)
            del self.contrib[w]
            self._cache.pop(w, None)
        oldest = int(now * 1000) - self.keep_ms
        for c in [c for c in self.chunks if c < oldest]:
            del self.chunks[c]

    def sum(self, start: int, end: int, project, sketches: bool) -> dict[tuple, Agg]:
        """Per group, the sum of everything in windows [start, end)."""
        out: dict[tuple, Agg] = {}
        sources = []
        for c, chunk in self.chunks.items():
            if start <= c and c + self.chunk_ms <= end:
                sources.append(chunk)
        for w in self.contrib:
            if start <= w < end:
                win = self.window(w)
                if win:
                    sources.append(win)
        for src in sources:
            for key, a in src.items():
                g = project(key)
                if g is None:
                    continue
                acc = out.get(g)
                if acc is None:
                    acc = out[g] = Agg()
                acc.add(a, sketches)
        return out

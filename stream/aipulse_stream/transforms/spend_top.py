"""Top spenders per window and feature: a mergeable heavy-hitter summary of cost by user.

Per-user cost is where one bad user or a leaked key burns the budget, and user ids are far
too many to keep a row each. So each contribution row (one window, service and feature, from
ONE offset block of ONE partition: the identity and replace-on-replay discipline of the window
rows, transforms/windows.py) keeps its K biggest spenders exactly and the rest as "other"::

    top = SpendTop(k=20)                     # WindowAggregator owns one (windows.py)
    top.add(partition, block, offset, key, event)  # an interaction the aggregator counted
    rows = top.drain_rows(topic, window_s)         # with the aggregator's drain: -> spend_top_window

A row: ``top_users`` / ``top_usd`` / ``top_requests`` (parallel arrays, biggest first, ties by
user id), ``other_usd`` and ``other_users`` (identified users not kept), ``other_max_usd``
(the largest spend of a user not kept; 0 when none was dropped), ``other_hashes`` (the
sorted CRC32 of the users not kept: where a reader learns a user was cut), ``anonymous_usd`` (spend
with an empty user id) and ``total_usd`` = all of it (equal to the window row's ``cost_usd``
for the same window, service, feature, partition and block). Only priced spend counts
(``cost_usd`` given); the requests counted are those priced interactions.

Guarantees (K = ``k``; proofs in docs/metrics.md, held by tests/metrics/test_spend_top.py):

1. One row: a user whose share of the row's identified spend is more than 1/(K+1) (in
   particular, 1/K or more) is kept, exactly. A user not kept spent ``<= other_max_usd``,
   and ``other_max_usd <= (identified spend) / (K+1)``.
2. Any merge (a sum over any set S of rows: windows, features, partitions, blocks), with
   N = the identified spend of S, s = a user's true spend in S, ŝ = the sum of its kept
   entries and e = the sum of ``other_max_usd`` over the rows of S that cut it (its CRC32 in
   their ``other_hashes``; a collision only loosens e):
   ``ŝ <= s <= ŝ + e`` and ``e <= N / (K+1)``. So ŝ is exact when e = 0 (no row cut the
   user; the reader gets e per user), and every user with s > N/(K+1) appears with ŝ > 0.
   (Not "exact above a share": a user with half the hour's spend, tiny in one partition's
   block where K others spent more, is short by at most that row's ``other_max_usd``.)

Every row is a pure function of its block's events, so a replay rebuilds it identically and
``ReplacingMergeTree(version)`` keeps one; readers use FINAL and sum.
"""
from __future__ import annotations

import zlib
from datetime import datetime, timezone

DEFAULT_TOP_K = 20
_UTC = timezone.utc


class _Spend:
    """One contribution: user -> [usd, requests], plus anonymous spend and the newest offset."""

    __slots__ = ("users", "anonymous_usd", "total_usd", "version", "dirty")

    def __init__(self):
        self.users: dict[str, list] = {}
        self.anonymous_usd = 0.0
        self.total_usd = 0.0  # summed in event order, like the window row's cost_usd
        self.version = -1
        self.dirty = False  # changed since the last drain


class _Block:
    """A partition's open offset block: its contributions, and whether they changed since the last drain."""

    __slots__ = ("block", "rows", "dirty")

    def __init__(self, block: int):
        self.block = block
        self.rows: dict[tuple, _Spend] = {}
        self.dirty = False


def user_crc(user_id: str) -> int:
    """CRC-32 of a user id: ClickHouse's ``CRC32(user_id)`` gives the same number."""
    return zlib.crc32(user_id.encode())


def summarize(users: dict[str, list], k: int) -> tuple[list[str], list[float], list[int], float, int, float, list[int]]:
    """Keep the ``k`` biggest of ``{user: [usd, requests]}``: (users, usd, requests, other_usd,
    other_users, other_max_usd, other_hashes), biggest first, ties by user id (deterministic
    on replay); other_hashes = sorted distinct :func:`user_crc` of the users not kept::

        >>> summarize({"a": [5.0, 1], "b": [1.0, 2], "c": [2.0, 1]}, 2)
        (['a', 'c'], [5.0, 2.0], [1, 1], 1.0, 1, 1.0, [1908338681])
    """
    ranked = sorted(users.items(), key=lambda kv: (-kv[1][0], kv[0]))
    if len(ranked) <= k:
        return [u for u, _ in ranked], [v[0] for _, v in ranked], [v[1] for _, v in ranked], 0.0, 0, 0.0, []
    kept, rest = ranked[:k], ranked[k:]
    return ([u for u, _ in kept], [v[0] for _, v in kept], [v[1] for _, v in kept],
            sum(v[0] for _, v in rest), len(rest), rest[0][1][0], sorted({user_crc(u) for u, _ in rest}))


class SpendTop:
    """Per partition: the open block's contributions, and blocks closed since the last drain.

    Driven by the window aggregator, which decides what counts (dedup, lateness, shadow) and
    calls :meth:`add`, :meth:`reset` and :meth:`drain_rows` alongside its own rows.
    """

    def __init__(self, k: int = DEFAULT_TOP_K):
        if k < 1:
            raise ValueError(f"spend top k must be >= 1 (got {k})")
        self.k = k
        self._open: dict[int, _Block] = {}                             # partition -> its open block
        self._closed: list[tuple[int, int, dict[tuple, _Spend]]] = []  # (partition, block, rows)

    def reset(self, partition: int) -> None:
        """Drop a partition's state (restart at a block start, or revoked)."""
        self._open.pop(partition, None)
        self._closed = [c for c in self._closed if c[0] != partition]

    def add(self, partition: int, block: int, offset: int, key: tuple, event) -> None:
        """Count one interaction the aggregator counted under ``key`` = (window_ms, service,
        feature, model, variant); unpriced or shadow interactions are ignored."""
        usd = event.cost_usd
        if usd is None or event.shadow:
            return
        part = self._open.get(partition)
        if part is None or part.block != block:
            if part is not None and part.dirty:
                self._closed.append((partition, part.block, part.rows))
            part = self._open[partition] = _Block(block)
        part.dirty = True
        rkey = key[:3]
        row = part.rows.get(rkey)
        if row is None:
            row = part.rows[rkey] = _Spend()
        row.version = offset
        row.dirty = True
        row.total_usd += usd
        user = event.user_id
        if user:
            entry = row.users.get(user)
            if entry is None:
                row.users[user] = [usd, 1]
            else:
                entry[0] += usd
                entry[1] += 1
        else:
            row.anonymous_usd += usd

    def drain_rows(self, topic: str, window_s: int) -> list[dict]:
        """Full state of every contribution changed since the last drain (columns of
        ``spend_top_window``, migration 006). Unlike ``metrics_window`` (whose rollup views need
        every row of a touched block in each insert) no view reads this table, so an unchanged
        row, already stored at its version, is not sent again."""
        out = []
        for partition, block, rows in self._closed:
            out.extend(self._rows(topic, window_s, partition, block, rows))
        self._closed = []
        for partition in sorted(self._open):
            part = self._open[partition]
            if part.dirty:
                out.extend(self._rows(topic, window_s, partition, part.block, part.rows))
                part.dirty = False
        return out

    def _rows(self, topic, window_s, partition, block, rows):
        for (window, service, feature), r in rows.items():
            if not r.dirty:
                continue
            r.dirty = False
            users, usd, reqs, other, other_n, other_max, other_hashes = summarize(r.users, self.k)
            yield {
                "service": service, "feature": feature,
                "window_start": datetime.fromtimestamp(window // 1000, _UTC),
                "topic": topic, "partition": partition, "block": block, "version": r.version,
                "window_s": window_s, "top_k": self.k,
                "top_users": users, "top_usd": usd, "top_requests": reqs,
                "other_usd": other, "other_users": other_n, "other_max_usd": other_max,
                "other_hashes": other_hashes,
                "anonymous_usd": r.anonymous_usd,
                "total_usd": r.total_usd,
            }

"""Join feedback and evaluations to their interaction's dimensions, deterministically.

Usage (the worker, once per consumed batch, before aggregating)::

    >>> resolver = JoinResolver(settings, client)            # doctest: +SKIP
    >>> joined = resolver.resolve([(0, 17, interaction), (0, 18, feedback)])   # doctest: +SKIP
    >>> joined[feedback.event_id]                              # doctest: +SKIP
    JoinedKey(service='support', feature='chat', model='gpt-4o', variant='', ts_ms=1700000000000)

The rule, identical in the first run and in every replay (so window rows are reproducible):
a feedback or evaluation at (partition p, offset o) is joined to the interaction with its
``interaction_id`` **in the same partition at an offset below o** (the topic is keyed by
interaction id, so they share the partition), if the event's ts is at most
``settings.join_horizon_s`` after the interaction's ts. Otherwise it is orphaned (None).
An interaction that arrives after its feedback therefore leaves that feedback orphaned: a
later replay must not resolve it differently from the first run.

Where the interaction is found: first an in-memory LRU cache of recently observed
interactions (``observe``; ``resolve`` also observes the interactions of its own batch, in
order); else one batched ClickHouse lookup per ``resolve`` call in the raw ``interactions``
table, restricted to the same partition. That needs the worker to have inserted the raw
events of every acked offset block (it does, before acking), which is what makes a cold
restart resolve exactly as the warm run did. docs/metrics.md weighs this against a Faust
changelog table.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Sequence

from aipulse.contract import Evaluation, Feedback, Interaction

from ..config import Settings

DEFAULT_CACHE_SIZE = 200_000   # interactions kept in memory; ~200 bytes each
LOOKUP_CHUNK = 1_000           # interaction ids per ClickHouse IN (...) query


def ts_ms(dt: datetime) -> int:
    """Epoch milliseconds, floored exactly as clickhouse-connect stores a DateTime64(3).

    Every comparison of event times (windows, lateness, the join horizon) uses this integer,
    so an interaction read back from ClickHouse compares exactly as the in-memory one did.
    """
    return (math.floor(dt.timestamp()) * 1_000_000 + dt.microsecond) // 1_000


@dataclass(frozen=True, slots=True)
class JoinedKey:
    """The dimensions a feedback/evaluation is attributed to (its interaction's)."""

    service: str
    feature: str
    model: str
    variant: str
    ts_ms: int  # the interaction's event time, epoch milliseconds (as stored: DateTime64(3))


@dataclass(frozen=True, slots=True)
class _Seen:
    key: JoinedKey
    partition: int
    offset: int


# A lookup returns, for the ids asked, every stored copy as
# (interaction_id, service, feature, model, variant, ts_epoch_ms, partition, offset).
LookupRow = tuple[str, str, str, str, str, int, int, int]
Lookup = Callable[[int, Sequence[str]], Iterable[LookupRow]]


def clickhouse_lookup(client, database: str, topic: str | None = None) -> Lookup:
    """A ``Lookup`` that reads the raw ``interactions`` table through clickhouse-connect
    (restricted to the feedback's own topic when given: offsets are per topic)."""

    def lookup(partition: int, ids: Sequence[str]) -> list[LookupRow]:
        rows: list[LookupRow] = []
        for i in range(0, len(ids), LOOKUP_CHUNK):
            chunk = list(ids[i : i + LOOKUP_CHUNK])
            result = client.query(
                "SELECT interaction_id, service, feature, model, variant, toUnixTimestamp64Milli(ts), "
                f"_partition, _offset FROM {database}.interactions "
                "WHERE _partition = {p:UInt32} AND interaction_id IN {ids:Array(String)}"
                + (" AND _topic = {t:String}" if topic is not None else ""),
                parameters={"p": partition, "ids": chunk, "t": topic or ""},
            )
            rows.extend(tuple(r) for r in result.result_rows)
        return rows

    return lookup


class JoinResolver:
    """Resolves feedback/evaluations to a :class:`JoinedKey`, or None when orphaned."""

    def __init__(self, settings: Settings, client=None, *, lookup: Lookup | None = None,
                 cache_size: int = DEFAULT_CACHE_SIZE):
        if lookup is None and client is not None:
            lookup = clickhouse_lookup(client, settings.database)
        self._lookup = lookup
        self._horizon_ms = int(settings.join_horizon_s) * 1000
        self._cache: OrderedDict[str, _Seen] = OrderedDict()
        self._cache_size = cache_size
        self.cache_hits = 0
        self.store_lookups = 0   # ids looked up in ClickHouse (self-metric)
        self.orphaned = 0

    def observe(self, partition: int, offset: int, interaction: Interaction) -> None:
        """Remember an interaction (its earliest copy: duplicates carry the same dimensions)."""
        iid = interaction.interaction_id
        seen = self._cache.get(iid)
        if seen is not None and seen.partition == partition and seen.offset <= offset:
            self._cache.move_to_end(iid)
            return
        self._cache[iid] = _Seen(
            JoinedKey(interaction.service, interaction.feature, interaction.model,
                      interaction.variant, ts_ms(interaction.ts)),
            partition, offset,
        )
        self._cache.move_to_end(iid)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def resolve(self, batch: Sequence[tuple[int, int, object]]) -> dict[str, JoinedKey | None]:
        """Map every feedback/evaluation event_id of ``batch`` to its JoinedKey or None.

        ``batch`` is the consumed (partition, offset, event) list in offset order per
        partition; its interactions are observed on the way, so a feedback joins an
        interaction that precedes it in the same batch.
        """
        out: dict[str, JoinedKey | None] = {}
        pending: list[tuple[int, int, Feedback | Evaluation]] = []
        for partition, offset, event in batch:
            if isinstance(event, Interaction):
                self.observe(partition, offset, event)
            elif isinstance(event, (Feedback, Evaluation)):
                seen = self._cache.get(event.interaction_id)
                if seen is not None and seen.partition == partition and seen.offset < offset:
                    self.cache_hits += 1
                    out[event.event_id] = self._within_horizon(seen.key, event)
                else:
                    pending.append((partition, offset, event))
        if pending:
            self._resolve_from_store(pending, out)
        self.orphaned += sum(1 for v in out.values() if v is None)
        return out

    def _within_horizon(self, key: JoinedKey, event) -> JoinedKey | None:
        return key if ts_ms(event.ts) - key.ts_ms <= self._horizon_ms else None

    def _resolve_from_store(self, pending, out) -> None:
        if self._lookup is None:
            for _, _, event in pending:
                out[event.event_id] = None
            return
        by_partition: dict[int, set[str]] = {}
        for partition, _, event in pending:
            by_partition.setdefault(partition, set()).add(event.interaction_id)
        # Earliest stored copy per (partition, interaction id).
        found: dict[tuple[int, str], _Seen] = {}
        for partition, ids in by_partition.items():
            ids_sorted = sorted(ids)  # a stable query text helps the server's caches and tests
            self.store_lookups += len(ids_sorted)
            for iid, service, feature, model, variant, ts, p, o in self._lookup(partition, ids_sorted):
                if int(p) != partition:
                    continue
                prev = found.get((partition, iid))
                if prev is None or int(o) < prev.offset:
                    found[(partition, iid)] = _Seen(
                        JoinedKey(service, feature, model, variant, int(ts)), int(p), int(o))
        for partition, offset, event in pending:
            seen = found.get((partition, event.interaction_id))
            if seen is None or seen.offset >= offset:
                out[event.event_id] = None
            else:
                out[event.event_id] = self._within_horizon(seen.key, event)

    def __len__(self) -> int:
        return len(self._cache)

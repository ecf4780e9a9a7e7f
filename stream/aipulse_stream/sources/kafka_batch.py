"""The Kafka batch source: Faust's consumer, handing each fetched batch whole to the pipeline.

Faust delivers a message at a time to agents (``noack_take`` and friends build batches out of
per-message delivery, ~100 µs of CPU per event: docs/benchmarks.md). This source keeps Faust as
the application -- consumer group, rebalance callbacks, offset commits, producer -- and replaces
only the consumer's ``_drain_messages``: the records aiokafka fetched go, as one list, to a
:class:`BatchHandler`, and the offsets it reports as stored are acked into Faust's own
bookkeeping (``Consumer._acked``), which Faust's commit timer then commits::

    app = AipulseApp(...)             # app.py: its transport's consumer is BatchConsumer
    app.batch_handler = handler       # start(), process(records) -> {partition: offset}, revoke(parts)
    app.topics.add(events_topic)      # subscribe (no agent is needed)

Records are aiokafka ``ConsumerRecord`` objects (``.partition``, ``.offset``, ``.key``,
``.value``, ``.timestamp``), in offset order per partition.

Partition epochs: every partition has an epoch that changes when it is revoked. A batch
remembers the epochs it was fetched under; the handler is told (``still_owned``) so that
nothing computed under an old epoch is written, and nothing of it is acked.

The group lease: a worker frozen (SIGSTOP, a long GC or VM pause, a starved host) longer than
the session timeout has been removed from the group and its partitions handed to another
member, but it learns so only at its next heartbeat, after its resumed batch went on writing
what the new owner writes too. So ``still_owned`` is also False once the last heartbeat the
coordinator accepted was *sent* more than ``session timeout - LEASE_MARGIN_S`` ago (the
coordinator cannot have expired the member before that): every assigned partition is then
treated as lost (epochs bumped, handler state forgotten, re-read from the commits), as Kafka's
Java client does in ``onPartitionsLost``.

This relies on private names of faust-streaming (pinned in pyproject.toml);
tests/unit/test_faust_internals.py fails when one of them changes.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Protocol

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from .. import crashpoints
from .. import selfmetrics as m

log = logging.getLogger("aipulse.source")

FETCH_TIMEOUT_S = 1.0
# A crashed batch ends the process (exit status below) so that it replays from the last commit:
# a handler that raised may have written part of a batch, and the in-memory state of its
# partitions no longer matches what is committed. (Faust's supervisor would restart an agent
# in-process and the next batch would ack past the crashed one.)
CRASH_EXIT_CODE = 70
# A write must start this long before the coordinator could expire the member: the time one
# insert may take to land (see "The group lease" above).
LEASE_MARGIN_S = 3.0


class BatchHandler(Protocol):
    """``process`` may leave a batch's writes running and report its offsets at a later call
    (pipeline.py): it returns what is stored so far; ``flush`` waits for the rest."""

    async def start(self) -> None: ...
    async def process(self, records: list, still_owned) -> dict[int, int]: ...
    async def flush(self) -> dict[int, int]: ...
    def revoke(self, partitions: set[int]) -> None: ...


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetch loop delivers batches (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ack_next: dict[TP, int] = {}   # lowest offset not yet acked, per assigned tp
        self._epochs: dict[TP, int] = {}     # bumped at every revoke
        self._resync = False                 # a batch was abandoned: rewind to the commits first
        self._tps: dict[int, TP] = {}        # partition -> TP of the events topic (acks of earlier batches)
        self._alive_at = time.monotonic()    # when the last accepted heartbeat (or join) was sent
        self._lease_s = self.app.conf.broker_session_timeout - LEASE_MARGIN_S

    # -- the group lease ---------------------------------------------------------------------
    def _new_consumer_thread(self):
        return LeaseConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def renew_lease(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (monotonic) was accepted (the consumer thread)."""
        if sent_at > self._alive_at:
            self._alive_at = sent_at

    def lease_valid(self) -> bool:
        """False once the coordinator may have removed this member (module docstring); the
        partitions are then dropped as lost, once per expiry."""
        if time.monotonic() - self._alive_at < self._lease_s:
            self._lost = False
            return True
        self._resync = True  # what is dropped meanwhile is re-read from the commits
        if not self._lost:
            self._lost = True
            lost = set(self.assignment()) | set(self._ack_next)
            log.warning("group lease expired (last accepted heartbeat sent %.1fs ago): dropping "
                        "partitions %s as lost until the group confirms them",
                        time.monotonic() - self._alive_at, sorted(tp.partition for tp in lost))
            for tp in lost:
                self._epochs[tp] = self._epochs.get(tp, 0) + 1
                self._ack_next.pop(tp, None)
            handler = self.app.batch_handler
            if handler is not None:
                handler.revoke({tp.partition for tp in lost})
        return False

    _lost = False

    # -- rebalance -------------------------------------------------------------------------
    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.renew_lease(time.monotonic())  # a completed join is an accepted membership
        self._lost = False
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
            self._ack_next.pop(tp, None)
        handler = self.app.batch_handler
        if handler is not None:
            handler.revoke({tp.partition for tp in revoked})
        crashpoints.reached("during_revoke")
        await super().on_partitions_revoked(revoked)

    def epoch(self, tp: TP) -> int:
        return self._epochs.get(tp, 0)

    # -- acks ------------------------------------------------------------------------------
    def ack_upto(self, tp: TP, offset: int) -> None:
        """Ack every offset of ``tp`` up to ``offset`` (Faust commits offset + 1 on its timer).

        Faust commits only a contiguous run of acked offsets from the committed one, so every
        offset is acked, including ones with no record (gaps of transaction markers)."""
        start = self._ack_next.get(tp)
        if start is None or offset < start:
            return
        committed = self._committed_offset[tp]
        if committed is not None and committed > start:
            start = committed
        if offset >= start:
            acked = self._acked[tp]
            acked.extend(range(start, offset + 1))
            self._n_acked += offset + 1 - start
        self._ack_next[tp] = offset + 1

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        did_commit = await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        if did_commit:
            crashpoints.reached("after_commit")
        return did_commit

    def _note_first(self, tp: TP, first_offset: int) -> None:
        if tp not in self._ack_next:
            committed = self._committed_offset[tp]
            self._ack_next[tp] = min(first_offset, committed) if committed is not None else first_offset

    # -- the fetch loop ----------------------------------------------------------------------
    async def _drain_messages(self, fetcher) -> None:  # noqa: C901 (one loop, kept in one place)
        """Replaces Faust's per-message loop: fetch, gather up to a batch, hand it over, ack."""
        handler: BatchHandler = self.app.batch_handler
        conf = self.app.aipulse_settings
        max_events, max_wait = conf.batch_max_events, conf.batch_max_wait_s
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = self._read_offset
        await handler.start()
        m.READY.set(1)
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                if self._resync:
                    await self._seek_back()
                    self._resync = False
                batch, epochs = await self._gather(max_events, max_wait, consumer_stopped, fetcher_stopped)
                if not batch:
                    # The stream paused (or a batch was dropped at a rebalance): the last
                    # batch's writes were left running; wait for them and ack what they stored.
                    self._ack(await handler.flush(), {})
                    continue
                still_owned = lambda p, _e=epochs, _t=self._epochs: (  # noqa: E731
                    self.lease_valid() and _t.get(_e[p][0], 0) == _e[p][1])
                try:
                    ackable = await handler.process(batch, still_owned)
                except asyncio.CancelledError:
                    # Stopping (or Faust restarting the fetcher): the batch is abandoned half
                    # done; forget its partitions' state and re-read them from the commits.
                    handler.revoke(set(epochs))
                    self._resync = True
                    raise
                stale = {p for p in epochs if not still_owned(p)}
                if stale:
                    # Revoked while the batch was processed: the state it rebuilt for those
                    # partitions is stale (their new owner restarts from the last commit).
                    handler.revoke(stale)
                # The offsets reported are of batches already stored (this one's or an earlier
                # one's); the handler has dropped those of partitions revoked since their fetch.
                self._ack(ackable, epochs)
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except Exception:
            log.exception("the batch pipeline crashed; exiting so the worker replays from the last commit")
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)

    def _ack(self, ackable: dict[int, int], epochs: dict) -> None:
        for p, upto in ackable.items():
            tp = self._tps.get(p)
            if tp is None or tp not in self._ack_next:
                continue  # revoked since (its _ack_next went with it): not ours to ack
            self.ack_upto(tp, upto)
            m.ACKED_OFFSET.labels(str(p)).set(upto)
        self._export_lag(epochs or {p: (tp, 0) for p, tp in self._tps.items() if p in ackable}, ackable)

    async def _gather(self, max_events: int, max_wait: float, consumer_stopped, fetcher_stopped):
        """Fetch until ``max_events`` records or ``max_wait`` seconds after the first one.

        Returns (records, {partition: (tp, epoch)}); nothing when a fetch waited its timeout
        with nothing gathered (the stream paused); records of a generation that ended while
        gathering are dropped (their partitions are re-read from the commits after the rebalance)."""
        batch: list = []
        epochs: dict[int, tuple[TP, int]] = {}
        deadline = None
        generation = None
        read_offset = self._read_offset
        while not (consumer_stopped() or fetcher_stopped()):
            timeout = FETCH_TIMEOUT_S if deadline is None else max(0.0, deadline - time.monotonic())
            records, active = await self._wait_next_records(timeout)
            if self.should_stop:
                return [], {}
            gen_now = self.app.consumer_generation_id
            if not batch:
                generation = gen_now  # what this fetch returned belongs to the current generation
            if not self.flow_active or gen_now != generation:
                # A rebalance stopped the flow, or one ended while this batch was gathered: what
                # was gathered may be from before it, and what this fetch returned from after
                # its seek. Drop both and seek back to the commits, or the partitions would go
                # on from past the dropped records (the middle of an offset block).
                log.info("dropping a gathered batch of %d records (flow active: %s, generation %s -> %s)",
                         len(batch), self.flow_active, generation, gen_now)
                await self._seek_back()
                return [], {}
            for tp, recs in (records or {}).items():
                if not recs or (active is not None and tp not in active and tp not in self._buffered_partitions):
                    continue
                r_off = read_offset[tp]
                if r_off is not None and recs[0].offset < r_off:
                    recs = [r for r in recs if r.offset >= r_off]  # already delivered
                    if not recs:
                        continue
                p = tp.partition
                if p not in epochs:
                    epochs[p] = (tp, self._epochs.get(tp, 0))
                    self._tps[p] = tp
                self._note_first(tp, recs[0].offset)
                read_offset[tp] = recs[-1].offset + 1
                batch.extend(recs)
            if not batch and not records:
                # A fetch timed out with nothing gathered: the stream paused. Return, so that
                # the caller waits for the last batch's writes and acks them (they would wait
                # for the next record otherwise: no commit, and the lag never drains).
                return [], {}
            if batch and deadline is None:
                deadline = time.monotonic() + max_wait
            if batch and (len(batch) >= max_events or time.monotonic() >= deadline):
                break
            await asyncio.sleep(0)
        return batch, epochs

    async def _seek_back(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:
            # Faust's own getmany logs and goes on the same way; the next rebalance seeks again.
            log.warning("seek to committed offsets failed: %r", exc)

    def _export_lag(self, epochs: dict, ackable: dict[int, int]) -> None:
        for p, (tp, _e) in epochs.items():
            try:
                hw = self.highwater(tp)
            except Exception:  # not known yet (first fetch): skip this round
                continue
            if hw is None:
                continue
            upto = ackable.get(p)
            if upto is None:
                upto = self._ack_next.get(tp, 0) - 1
            m.CONSUMER_LAG.labels(str(p)).set(max(0, hw - (upto + 1)))
            read = self._read_offset[tp]
            if read is not None:
                m.UNREAD.labels(str(p)).set(max(0, hw - read))


class LeaseConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, telling the batch consumer of every accepted heartbeat."""

    async def on_start(self) -> None:
        await super().on_start()
        coordinator = self._consumer._coordinator
        do_heartbeat = coordinator._do_heartbeat
        renew = self.consumer.renew_lease

        async def heartbeat():
            sent_at = time.monotonic()
            accepted = await do_heartbeat()
            if accepted:  # (also True while the group rebalances: the member is still in it)
                renew(sent_at)
            return accepted

        coordinator._do_heartbeat = heartbeat


class BatchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the batch consumer."""

    Consumer = BatchConsumer

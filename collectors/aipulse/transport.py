"""The bounded buffer and the background sender that moves events to Kafka.

The application's thread calls :meth:`Transport.submit`, which takes one uncontended lock,
appends to a deque and returns; it never blocks, never raises and never does I/O. A sender
thread turns each queued item into wire bytes (through the ``prepare`` function it is given)
as soon as it can, even while Kafka is away, and hands them to a kafka-python
``KafkaProducer`` (acks=all, idempotent, compressed, lingering). A second small thread, the
connector, creates the producer and keeps retrying with backoff while no broker answers, so a
broker that is down at start never stalls anything.

Every event submitted ends in exactly one of: ``sent`` (acknowledged by Kafka), ``dropped``
(counted by reason) or still ``queued`` (in the buffer or in flight)::

    emitted == sent + sum(dropped.values()) + queued

**Memory bound.** The buffer holds two kinds of entries: events the app just gave (counted at
the caller's estimate of their size, which counts every text and attribute value) and events
already encoded by the sender (counted at their exact wire size, key + value). Their sum stays
under ``max_queue_bytes``, so what ``stats()["queue_bytes"]`` reports is what is held. An event
whose estimate or encoded value exceeds ``max_event_bytes`` (the worker's own limit, same
variable) is dropped as ``oversized`` before it is held. Memory stays bounded by
``max_queue_bytes`` plus ``max_inflight_bytes``. The sender's own ledger message (one at a time,
see :meth:`Transport.send_own`) is outside these counts and bounds.

While Kafka is unreachable (no producer yet because no broker answered, or more than
``max_inflight_bytes`` unacknowledged and no acknowledgement for :data:`STALL_WAIT_S`) encoded
events wait in the bounded buffer; they are sent when the broker answers again, without a
restart.

Drop reasons:

- ``kafka_unavailable``: the buffer was full while Kafka was unreachable; or ``send`` failed.
- ``queue_full``: the buffer (events or bytes) was full while Kafka was reachable:
  the app emits faster than the broker takes.
- ``oversized``: one event larger than ``max_event_bytes``.
- ``delivery_failed``: handed to Kafka but not acknowledged within ``delivery_timeout_ms``.
- ``invalid``: failed the event contract (the warning says which field).
- ``closed``: still queued when ``close()``'s deadline passed, or submitted after it.
- ``internal_error``: a bug of ours, caught by the guard so the app never sees it.

**Exit.** kafka-python registers an ``atexit`` hook per producer that closes it; ``atexit``
runs hooks last-registered-first, so a producer created after the SDK's hook would be closed
before the SDK delivers its tail. :func:`register_exit_hook` keeps the SDK's hook the last
registered (it is moved each time a producer is created), so the tail is flushed first.

**Fork.** In a forked child the parent's threads do not exist and its producer's locks may be
held by a thread that is gone: the child never touches that producer (it is kept referenced
and marked closed, so neither its ``atexit`` hook nor its finaliser runs), and the transport
starts afresh, with new threads at the child's first event.

Usage (the SDK's client does this; shown for the shape of it)::

    t = Transport(cfg, prepare=lambda item: (b"key", b"{...}", 1700000000000))
    t.submit("interaction", {"feature": "chat"})   # True if queued, False if dropped
    t.flush(5.0)          # FlushResult(delivered=1, dropped={}, pending=0)
    t.close()
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import Config
from .kafka_security import classify_failure, diagnose

log = logging.getLogger("aipulse")

# auth / tls: Kafka refused the SASL credentials / the TLS handshake (kafka_security.py).
DROP_REASONS = ("queue_full", "kafka_unavailable", "auth", "tls", "oversized", "delivery_failed", "invalid",
                "closed", "internal_error")

# Estimated bytes of one event's fixed part, and of one field or attribute with a short value,
# for the buffer's byte bound until the sender has encoded the event (then its exact wire
# size counts). A text value longer than FIELD_EST_BYTES counts its length besides.
EVENT_BASE_BYTES = 256
FIELD_EST_BYTES = 48
# Wake the sender early when this many events wait, instead of at the next interval.
WAKE_AT = 1_000
# The sender encodes at most this many events before it sends what is encoded.
ENCODE_SLICE = 256
# After the in-flight cap is hit, how long the sender waits for acks before it declares the
# broker unavailable and starts dropping (instead of waiting) until acks flow again.
STALL_WAIT_S = 0.5
CONNECT_BACKOFF_START_S = 0.25
CONNECT_BACKOFF_MAX_S = 5.0


@dataclass(frozen=True)
class FlushResult:
    """What a :meth:`Transport.flush` settled since the previous flush (or the start).

    ``delivered``: events acknowledged by Kafka; ``dropped``: events dropped, by reason (only
    reasons with a count); ``pending``: events still queued or in flight when flush returned.
    Summed over every flush, ``delivered`` and ``dropped`` account for each event once. True
    when nothing is pending, so ``assert aipulse.flush(5)`` still reads as before
    (``pending`` is -1 if the flush itself failed, which the SDK logs at debug level).
    """

    delivered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    pending: int = 0

    def __bool__(self) -> bool:
        return self.pending == 0


# Transports alive in this process, reset in a forked child (one at-fork hook for all).
_LIVE: "weakref.WeakSet[Transport]" = weakref.WeakSet()
# Producers inherited from a parent process: never closed, never collected (see "Fork").
_ORPHANS: list[Any] = []
_exit_hook: Callable[[], None] | None = None
_exit_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _exit_lock
    _exit_lock = threading.Lock()
    for transport in list(_LIVE):
        transport._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def register_exit_hook(hook: Callable[[], None]) -> None:
    """Run ``hook`` at interpreter exit before any KafkaProducer's own exit hook.

        >>> register_exit_hook(close_the_client)   # doctest: +SKIP
    """
    global _exit_hook
    with _exit_lock:
        if _exit_hook is not None:
            atexit.unregister(_exit_hook)
        _exit_hook = hook
        atexit.register(hook)


def _keep_exit_hook_last() -> None:
    """Called after a producer is created (it has just registered its own exit hook)."""
    with _exit_lock:
        if _exit_hook is not None:
            atexit.unregister(_exit_hook)
            atexit.register(_exit_hook)


def _orphan(producer: Any) -> None:
    """A parent's producer seen from a forked child: disarm its exit hook and finaliser."""
    try:
        unregister = getattr(producer, "_unregister_cleanup", None)
        if unregister is not None:
            unregister()
        if hasattr(producer, "_closed"):
            producer._closed = True   # KafkaProducer.close() (and __del__) return at once
    except Exception:
        pass
    _ORPHANS.append(producer)


class Invalid(ValueError):
    """Raised by a ``prepare`` function for an event that breaks the contract."""


class Transport:
    """Bounded queue + sender thread + connector thread around one KafkaProducer."""

    def __init__(self, config: Config, prepare: Callable[[Any], tuple[bytes, bytes, int]],
                 producer_factory: Callable[..., Any] | None = None,
                 on_tick: Callable[[], None] | None = None):
        self._cfg = config
        self._prepare = prepare
        self._producer_factory = producer_factory
        self._on_tick = on_tick
        self._max_events = config.max_queue_events
        self._max_bytes = config.max_queue_bytes
        # An event bigger than the whole buffer could never be held either.
        self._max_event_bytes = min(config.max_event_bytes, config.max_queue_bytes)
        self._reset_state()
        self._warn_due: dict[str, float] = {}   # reason -> monotonic time its next warning may go
        _LIVE.add(self)

    # ------------------------------------------------------------------ caller side

    def submit(self, kind: str, fields: dict, _type: Any = type, _str: Any = str, _len: Any = len,
               _monotonic: Any = time.monotonic) -> bool:
        """Queue one event (``kind``, its field dict); ``False`` (and counted) if the buffer is
        full or we are closed. The application's thread runs this, and only this.

        Until the sender has encoded it, the event counts at an estimate of its size:
        :data:`EVENT_BASE_BYTES`, plus :data:`FIELD_EST_BYTES` per field and per attribute, plus
        the length of every longer text value, in any field or in ``attributes``, so a big
        value cannot hide from the byte bound. The estimate, the bound and the append are one frame: this is
        the SDK's whole caller-side cost after the handle's own bookkeeping.

            >>> t = Transport(Config.load(env={}), prepare=None)   # doctest: +SKIP
            >>> t.submit("interaction", {"feature": "chat", "attributes": {"doc": "x" * 10_000}})   # doctest: +SKIP
            True
            >>> t.stats()["queue_bytes"] > 10_000                   # doctest: +SKIP
            True
        """
        # Every field counts FIELD_EST_BYTES (its name and a short value); a text longer than
        # that counts its length on top, so a big one cannot hide. (type(v) with locals:
        # v.__class__ looks the attribute up on the type, per value; and adding only the long
        # texts' lengths spares an int object per field: this loop is most of the caller's cost.)
        nbytes = EVENT_BASE_BYTES + FIELD_EST_BYTES * _len(fields)
        for v in fields.values():
            if _type(v) is _str and _len(v) > FIELD_EST_BYTES:
                nbytes += _len(v)
        attrs = fields.get("attributes")
        if _type(attrs) is dict:  # anything else is refused later, as invalid
            nbytes += FIELD_EST_BYTES * _len(attrs)
            for v in attrs.values():
                if _type(v) is _str and _len(v) > FIELD_EST_BYTES:
                    nbytes += _len(v)
        with self._lock:
            self.emitted += 1
            # One comparison per bound on the way in; which bound refused is sorted out below.
            # _admit_bytes is -1 until the threads run and once closing, so that neither
            # needs a test of its own here.
            if (self._held < self._max_events and self._queued_bytes + nbytes <= self._admit_bytes
                    and nbytes <= self._max_event_bytes):
                self._queue.append((kind, fields, nbytes))
                self._queued_bytes += nbytes
                self._held += 1
                if self._held == WAKE_AT:
                    self._wake.set()
                return True
            if self._started and not self._closing and nbytes <= self._max_event_bytes:
                # The buffer is full: the common refusal (a tight loop outruns the sender), so
                # it stays in this frame, and its warning is looked at only when one is due.
                full = (self._refused or "kafka_unavailable") if self._unavailable else "queue_full"
                self.dropped[full] += 1
            else:
                full = self._refuse(nbytes)
                if full is None:   # the first event: the threads have just started; take it
                    self._queue.append((kind, fields, nbytes))
                    self._queued_bytes += nbytes
                    self._held += 1
                    return True
        if _monotonic() >= self._warn_due.get(full, 0.0):
            if full == "oversized":
                self._warn(full, "aipulse: event of about %d bytes is over max_event_bytes=%d; dropped",
                           nbytes, self._max_event_bytes)
            elif full != "closed":
                self._warn(full, "aipulse: buffer full (%d events, %d bytes, %s); dropping events",
                           self._max_events, self._max_bytes, full)
        return False

    def _refuse(self, nbytes: int) -> str | None:
        """Under the lock, for an event submit() neither admitted nor refused as a full buffer:
        start the threads if this is the first event (then None when it fits), else count the
        drop (closed, oversized) and say why."""
        if self._closing:
            full = "closed"
        else:
            if not self._started:
                self._start()
                if (self._held < self._max_events and self._queued_bytes + nbytes <= self._admit_bytes
                        and nbytes <= self._max_event_bytes):
                    return None
            if nbytes > self._max_event_bytes:
                full = "oversized"
            else:
                full = (self._refused or "kafka_unavailable") if self._unavailable else "queue_full"
        self.dropped[full] += 1
        return full

    # ------------------------------------------------------------------ control

    def count_refused(self, reason: str) -> None:
        """An event the API could not queue at all (its arguments broke the call)."""
        with self._lock:
            self.emitted += 1
            self.dropped[reason] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            waiting = len(self._queue) + len(self._encoded)
            return {
                "emitted": self.emitted,
                "sent": self.sent,
                "dropped": dict(self.dropped),
                "queued": waiting + self._processing + self._inflight,
                "queue_events": waiting,
                "queue_bytes": self._queued_bytes,
                "inflight_events": self._inflight,
                "inflight_bytes": self._inflight_bytes,
                "kafka_connected": not self._unavailable,
            }

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Wait (at most ``timeout`` s) until every queued event is sent or dropped; return
        what was delivered and dropped since the previous flush (:class:`FlushResult`)."""
        deadline = time.monotonic() + (self._cfg.shutdown_timeout_s if timeout is None else timeout)
        if self._started:
            self._wait_drained(deadline)
        return self._settle()

    def _wait_drained(self, deadline: float) -> None:
        while True:
            self._wake.set()
            with self._lock:
                drained = not self._queue and not self._encoded and not self._processing
            if drained or time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        producer = self._producer
        left = deadline - time.monotonic()
        if producer is not None and left > 0 and (self._inflight or self._own_inflight):
            try:
                producer.flush(timeout=left)
            except Exception:  # KafkaTimeoutError: the deadline passed with events in flight
                pass

    def _settle(self) -> FlushResult:
        with self._lock:
            sent, dropped = self.sent, dict(self.dropped)
            pending = len(self._queue) + len(self._encoded) + self._processing + self._inflight
            base_sent, base_dropped = self._flushed
            self._flushed = (sent, dropped)
        return FlushResult(sent - base_sent,
                           {r: n - base_dropped.get(r, 0) for r, n in dropped.items() if n - base_dropped.get(r, 0)},
                           pending)

    def send_own(self, key: bytes, value: bytes, ts_ms: int) -> None:
        """Queue the SDK's own message (its delivery ledger), outside the app's counters.

        At most one waits: a newer one replaces it (ledger counters are cumulative)."""
        with self._lock:
            if self._closed:
                return
            self._own = (key, value, ts_ms)
        self._wake.set()

    def close(self, timeout: float | None = None, last_words: Callable[[], None] | None = None) -> None:
        """Flush with a deadline, drop what is left (counted as ``closed``), stop the threads.

        ``last_words`` runs once the app's counters are final (the client queues its last
        ledger message there with :meth:`send_own`); it is delivered within the deadline."""
        if self._closed:
            return
        timeout = self._cfg.shutdown_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._started:
            self._wait_drained(deadline)
        with self._lock:
            self._closing = True   # the sender stops taking app events; own messages still go
            self._admit_bytes = -1  # and submit() refuses new ones, counted as closed
            left = len(self._queue) + len(self._encoded) + self._processing
            self.dropped[(self._refused or "kafka_unavailable") if self._unavailable else "closed"] += left
            self._queue.clear()
            self._encoded.clear()
            self._queued_bytes = 0
            self._held = 0
        if last_words is not None and self._started:
            try:
                last_words()
            except Exception:
                log.debug("aipulse: last ledger message failed", exc_info=True)
            while self._own is not None and self._producer is not None and time.monotonic() < deadline:
                self._wake.set()
                time.sleep(0.002)
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        for t in (self._sender, self._connector):
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()) + 0.5)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # KafkaTimeoutError: records still unacknowledged at the deadline
                log.debug("aipulse: producer close failed", exc_info=True)
                # Its finaliser would retry the close at interpreter exit and print a
                # traceback into the app's stderr: disarm it (its events are counted above).
                _orphan(producer)
        st = self.stats()
        lost = sum(st["dropped"].values())
        if lost or st["inflight_events"]:
            log.warning("aipulse: closed; %d of %d events were dropped %s, %d unacknowledged at the deadline",
                        lost, st["emitted"], {k: v for k, v in st["dropped"].items() if v},
                        st["inflight_events"])

    # ------------------------------------------------------------------ internals

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque = deque()     # (kind, fields, estimated bytes), from the app
        self._encoded: deque = deque()   # (key, value, ts_ms, wire bytes), from the sender
        self._queued_bytes = 0
        self._admit_bytes = -1  # max_queue_bytes once started; -1 again once closing (see submit)
        # Events taking a slot of max_queue_events: queued, being encoded, or encoded and waiting
        # (len(_queue) + _processing + len(_encoded), kept as one number for submit()).
        self._held = 0
        self._processing = 0
        self._inflight = 0
        self._inflight_bytes = 0
        self._own: tuple[bytes, bytes, int] | None = None
        self._own_inflight = 0
        self.emitted = 0
        self.sent = 0
        self.dropped = {r: 0 for r in DROP_REASONS}
        self._flushed: tuple[int, dict[str, int]] = (0, {})
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acked = threading.Event()
        self._producer = None
        self._stalled = False
        self._last_ack = 0.0
        self._unavailable = True  # until the connector has a producer
        self._refused: str | None = None  # "auth" / "tls" while Kafka refuses our credentials
        self._started = False
        self._closing = False
        self._closed = False
        self._sender: threading.Thread | None = None
        self._connector: threading.Thread | None = None
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        # The parent's threads do not exist in the child and its producer's sockets and locks
        # belong to the parent: never touch that producer, start from scratch, lazily, at the
        # child's first event.
        if self._producer is not None:
            _orphan(self._producer)
        self._reset_state()

    def _start(self) -> None:
        """Called under the lock at the first submit (and the first after a fork)."""
        self._started = True
        self._admit_bytes = self._max_bytes
        self._pid = os.getpid()
        self._sender = threading.Thread(target=self._run_sender, name="aipulse-sender", daemon=True)
        self._connector = threading.Thread(target=self._run_connector, name="aipulse-connector", daemon=True)
        self._sender.start()
        self._connector.start()

    def start(self) -> None:
        """Start the threads now instead of at the first event (idempotent)."""
        with self._lock:
            if not self._started and not self._closed:
                self._start()

    def _warn(self, reason: str, msg: str, *args: Any, exc_info: bool = False) -> None:
        """At most one warning per reason per ``warn_interval_s``: drops must not flood logs."""
        now = time.monotonic()
        if now >= self._warn_due.get(reason, 0.0):
            self._warn_due[reason] = now + self._cfg.warn_interval_s
            log.warning(msg, *args, exc_info=exc_info)

    # --- connector thread

    def _new_producer(self) -> Any:
        cfg = self._cfg
        if self._producer_factory is not None:
            return self._producer_factory(cfg)
        from kafka import KafkaProducer

        compression = cfg.compression
        if compression == "lz4":
            try:
                import lz4.frame  # noqa: F401
            except ImportError:
                compression = "gzip"
        options = dict(
            bootstrap_servers=cfg.bootstrap_servers.split(","),
            acks="all",
            enable_idempotence=True,
            compression_type=None if compression == "none" else compression,
            linger_ms=cfg.linger_ms,
            batch_size=cfg.batch_size,
            delivery_timeout_ms=cfg.delivery_timeout_ms,
            request_timeout_ms=cfg.request_timeout_ms,
            max_block_ms=cfg.max_block_ms,
            bootstrap_timeout_ms=cfg.connect_timeout_ms,
            reconnect_backoff_max_ms=cfg.reconnect_backoff_max_ms,
            client_id=f"aipulse-sdk-{cfg.service}",
        )
        options.update(cfg.kafka_security.client_options())
        options.update(cfg.kafka_options)
        return KafkaProducer(**options)

    def _run_connector(self) -> None:
        backoff = CONNECT_BACKOFF_START_S
        while not self._stop.is_set():
            try:
                producer = self._new_producer()
            except Exception as err:  # NoBrokersAvailable, DNS errors, a bad option
                # A refusal (bad password, untrusted certificate) is said as what to fix: kafka-python
                # only says "Unable to bootstrap", so diagnose() logs in once itself. The verdict
                # sticks until a producer connects.
                sec = self._cfg.kafka_security
                if not sec.is_plaintext:
                    self._refused = (classify_failure(err) or self._refused
                                     or diagnose(sec, self._cfg.bootstrap_servers, self._cfg.connect_timeout_ms / 1000))
                if self._refused:
                    self._warn(self._refused, "aipulse: %s; events are buffered, then dropped and counted as %r",
                               self._cfg.kafka_security.failure_line(self._refused, self._cfg.bootstrap_servers),
                               self._refused)
                else:
                    self._warn("connect", "aipulse: cannot reach Kafka at %s (%s); events are buffered, then "
                               "dropped and counted until it answers", self._cfg.bootstrap_servers, err)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, CONNECT_BACKOFF_MAX_S)
                continue
            # The producer just registered its own exit hook; ours must run before it.
            _keep_exit_hook_last()
            try:
                # Learn the topic's partitions now so send() never waits for metadata.
                producer.partitions_for(self._cfg.topic)
            except Exception:
                log.debug("aipulse: no metadata yet for %s", self._cfg.topic, exc_info=True)
            if self._stop.is_set():
                producer.close(timeout=0)
                return
            self._last_ack = time.monotonic()  # a fresh producer gets STALL_WAIT_S to prove itself
            self._producer = producer
            self._unavailable = False
            self._refused = None
            self._wake.set()
            log.info("aipulse: connected to Kafka at %s", self._cfg.bootstrap_servers)
            return

    # --- sender thread

    def _run_sender(self) -> None:
        while True:
            self._wake.wait(self._cfg.send_interval_s)
            self._wake.clear()
            try:
                if self._on_tick is not None and not self._closing:
                    self._on_tick()
                # Encode in slices and send in between, so a steady stream of new events
                # never keeps encoded ones from leaving (and Kafka away never stops encoding).
                while True:
                    self._encode(ENCODE_SLICE)
                    self._drain()
                    if not self._queue or self._closing:
                        break
            except Exception:  # the one guard: nothing of ours may kill the thread or reach the app
                log.exception("aipulse: internal error in the sender")
            if self._stop.is_set():
                return

    def _encode(self, limit: int) -> None:
        """Turn up to ``limit`` of the app's items into wire bytes now (Kafka up or not): from
        here on the buffer holds, and counts, exactly what will be sent."""
        q = self._queue
        while q and not self._closing and limit > 0:
            limit -= 1
            with self._lock:
                if not q:
                    return
                # Its estimate stays counted (and its slot taken) until it is encoded.
                kind, fields, nbytes = q.popleft()
                self._processing = 1
            reason, over = None, False
            try:
                key, value, ts_ms = self._prepare((kind, fields))
                size = len(key) + len(value)
                over = len(value) > self._max_event_bytes  # the worker's limit is on the value
            except Invalid as err:
                reason, size = "invalid", 0
                self._warn("invalid", "aipulse: invalid event dropped: %s", err)
            except Exception:
                reason, size = "internal_error", 0
                self._warn("internal_error", "aipulse: internal error, event dropped", exc_info=True)
            with self._lock:
                self._processing = 0
                if self._closing:  # close() counted it as dropped while we encoded it
                    return
                self._queued_bytes -= nbytes  # the estimate gives way to the exact size
                if reason is None:
                    if over:
                        reason = "oversized"
                    elif self._queued_bytes + size > self._max_bytes:
                        # The caller's estimate was low: keep the bound, not the event.
                        reason = "kafka_unavailable" if self._unavailable else "queue_full"
                    else:
                        self._encoded.append((key, value, ts_ms, size))
                        self._queued_bytes += size
                if reason is not None:
                    self.dropped[reason] += 1
                    self._held -= 1
            if reason == "oversized":
                self._warn("oversized", "aipulse: event of %d wire bytes is over max_event_bytes=%d; dropped",
                           size - len(key), self._max_event_bytes)

    def _drain(self) -> None:
        if self._own is not None and self._producer is not None:
            self._send_own()
        enc = self._encoded
        while enc and not self._closing and self._ready():
            with self._lock:
                if not enc:
                    return
                key, value, ts_ms, size = enc.popleft()
                self._queued_bytes -= size
                self._held -= 1
                # The event moves from "queued" to "in flight" in one step, so that stats()
                # never counts it twice (emitted == sent + dropped + queued at every instant).
                self._inflight += 1
                self._inflight_bytes += size
            self._send_one(key, value, ts_ms, size)

    def _ready(self) -> bool:
        """Is there a producer with room for more? If not, events wait in the bounded buffer
        (and new ones are dropped as ``kafka_unavailable`` once it is full)."""
        if self._producer is None:
            self._unavailable = True
            return False
        if self._inflight_bytes < self._cfg.max_inflight_bytes:
            self._stalled = self._unavailable = False
            return True
        if not self._stalled:
            if time.monotonic() - self._last_ack < STALL_WAIT_S:
                # Backpressure for a slow broker that still acknowledges: wait a little.
                deadline = time.monotonic() + STALL_WAIT_S
                while self._inflight_bytes >= self._cfg.max_inflight_bytes and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._acked.clear()
                    self._acked.wait(min(left, 0.05))
                if self._inflight_bytes < self._cfg.max_inflight_bytes:
                    return True
            self._stalled = self._unavailable = True
            self._warn("kafka_unavailable", "aipulse: Kafka is not acknowledging (%d bytes waiting); "
                       "buffering, then dropping new events until it does", self._inflight_bytes)
        return False

    def _send_one(self, key: bytes, value: bytes, ts_ms: int, size: int) -> None:
        try:
            future = self._producer.send(self._cfg.topic, value=value, key=key, timestamp_ms=ts_ms)
        except Exception as err:  # KafkaTimeoutError (metadata), IllegalStateError (closed)
            with self._lock:
                self._inflight -= 1
                self._inflight_bytes -= size
                self.dropped["kafka_unavailable"] += 1
            self._warn("send", "aipulse: producer.send failed (%s); event dropped", err)
            return
        future.add_callback(self._on_ack, size)
        future.add_errback(self._on_fail, size)

    def _send_own(self) -> None:
        with self._lock:
            own, self._own = self._own, None
            if own is None:
                return
            self._own_inflight += 1
        key, value, ts_ms = own
        try:
            future = self._producer.send(self._cfg.topic, value=value, key=key, timestamp_ms=ts_ms)
        except Exception:
            self._own_settled()
            log.debug("aipulse: ledger message not sent", exc_info=True)
            return
        future.add_both(self._own_settled)

    def _own_settled(self, _result: Any = None) -> None:
        with self._lock:
            self._own_inflight -= 1

    def _on_ack(self, size: int, _metadata: Any = None) -> None:
        # Runs on kafka-python's I/O thread.
        with self._lock:
            self._inflight -= 1
            self._inflight_bytes -= size
            self.sent += 1
        self._last_ack = time.monotonic()
        self._acked.set()

    def _on_fail(self, size: int, err: Any = None) -> None:
        with self._lock:
            self._inflight -= 1
            self._inflight_bytes -= size
            self.dropped["delivery_failed"] += 1
        self._acked.set()
        self._warn("delivery_failed", "aipulse: Kafka did not acknowledge an event (%s); dropped", err)

"""The bounded buffer and the background sender that moves events to Kafka.

The application's thread calls :meth:`Transport.submit`, which takes one uncontended lock,
appends to a deque and returns; it never blocks, never raises and never does I/O. A sender
thread turns each queued item into wire bytes (through the ``prepare`` function it is given)
and hands them to a kafka-python ``KafkaProducer`` (acks=all, idempotent, compressed,
lingering). A second small thread, the connector, creates the producer and keeps retrying with
backoff while no broker answers, so a broker that is down at start never stalls anything.

Every event submitted ends in exactly one of: ``sent`` (acknowledged by Kafka), ``dropped``
(counted by reason) or still ``queued`` (in the buffer or in flight)::

    emitted == sent + sum(dropped.values()) + queued

While Kafka is unreachable (no producer yet because no broker answered, or more than
``max_inflight_bytes`` unacknowledged and no acknowledgement for :data:`STALL_WAIT_S`) events wait in the bounded
buffer; they are sent when the broker answers again, without a restart. Memory stays bounded
by ``max_queue_events``/``max_queue_bytes`` plus ``max_inflight_bytes``.

Drop reasons:

- ``kafka_unavailable``: the buffer was full while Kafka was unreachable; or ``send`` failed.
- ``queue_full``: the buffer (events or estimated bytes) was full while Kafka was reachable:
  the app emits faster than the broker takes.
- ``delivery_failed``: handed to Kafka but not acknowledged within ``delivery_timeout_ms``.
- ``invalid``: failed the event contract (the warning says which field).
- ``closed``: still queued when ``close()``'s deadline passed, or submitted after it.
- ``internal_error``: a bug of ours, caught by the guard so the app never sees it.

Usage (the SDK's client does this; shown for the shape of it)::

    t = Transport(cfg, prepare=lambda item: (b"key", b"{...}", 1700000000000))
    t.submit(item, 600)   # True if queued, False if dropped
    t.flush(5.0)
    t.close()
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

from .config import Config
from .kafka_security import classify_failure, diagnose

log = logging.getLogger("aipulse")

# auth / tls: Kafka refused the SASL credentials / the TLS handshake (kafka_security.py).
DROP_REASONS = ("queue_full", "kafka_unavailable", "auth", "tls", "delivery_failed", "invalid", "closed",
                "internal_error")

# Wake the sender early when this many events wait, instead of at the next interval.
WAKE_AT = 1_000
# After the in-flight cap is hit, how long the sender waits for acks before it declares the
# broker unavailable and starts dropping (instead of waiting) until acks flow again.
STALL_WAIT_S = 0.5
CONNECT_BACKOFF_START_S = 0.25
CONNECT_BACKOFF_MAX_S = 5.0


# Transports alive in this process, reset in a forked child (one at-fork hook for all).
_LIVE: "weakref.WeakSet[Transport]" = weakref.WeakSet()


def _reset_after_fork() -> None:
    for transport in list(_LIVE):
        transport._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


class Invalid(ValueError):
    """Raised by a ``prepare`` function for an event that breaks the contract."""


class Transport:
    """Bounded queue + sender thread + connector thread around one KafkaProducer."""

    def __init__(self, config: Config, prepare: Callable[[Any], tuple[bytes, bytes, int]],
                 producer_factory: Callable[..., Any] | None = None):
        self._cfg = config
        self._prepare = prepare
        self._producer_factory = producer_factory
        self._max_events = config.max_queue_events
        self._max_bytes = config.max_queue_bytes
        self._reset_state()
        self._last_warn: dict[str, float] = {}
        _LIVE.add(self)

    # ------------------------------------------------------------------ caller side

    def submit(self, item: Any, nbytes: int) -> bool:
        """Queue one item; ``False`` (and counted) if the buffer is full or we are closed."""
        with self._lock:
            self.emitted += 1
            q = self._queue
            if self._closed:
                self.dropped["closed"] += 1
                return False
            if len(q) >= self._max_events or self._queued_bytes + nbytes > self._max_bytes:
                full = (self._refused or "kafka_unavailable") if self._unavailable else "queue_full"
                self.dropped[full] += 1
            else:
                q.append((item, nbytes))
                self._queued_bytes += nbytes
                full = None
            if not self._started:
                self._start()
        if full:
            self._warn(full, "aipulse: buffer full (%d events, %s); dropping events",
                       self._max_events, full)
            return False
        if len(q) == WAKE_AT:
            self._wake.set()
        return True

    # ------------------------------------------------------------------ control

    def count_refused(self, reason: str) -> None:
        """An event the API could not queue at all (its arguments broke the call)."""
        with self._lock:
            self.emitted += 1
            self.dropped[reason] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "emitted": self.emitted,
                "sent": self.sent,
                "dropped": dict(self.dropped),
                "queued": len(self._queue) + self._processing + self._inflight,
                "queue_events": len(self._queue),
                "queue_bytes": self._queued_bytes,
                "inflight_events": self._inflight,
                "inflight_bytes": self._inflight_bytes,
                "kafka_connected": not self._unavailable,
            }

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s) until every queued event is sent or dropped."""
        deadline = time.monotonic() + (self._cfg.shutdown_timeout_s if timeout is None else timeout)
        if not self._started:
            return not self._queue
        while True:
            self._wake.set()
            with self._lock:
                drained = not self._queue and not self._processing
            if drained or time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        producer = self._producer
        left = deadline - time.monotonic()
        if producer is not None and left > 0 and self._inflight:
            try:
                producer.flush(timeout=left)
            except Exception:  # KafkaTimeoutError: the deadline passed with events in flight
                pass
        with self._lock:
            return not self._queue and not self._processing and not self._inflight

    def close(self, timeout: float | None = None) -> None:
        """Flush with a deadline, drop what is left (counted as ``closed``), stop the threads."""
        if self._closed:
            return
        timeout = self._cfg.shutdown_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._lock:
            self._closed = True
            left = len(self._queue)
            self.dropped[(self._refused or "kafka_unavailable") if self._unavailable else "closed"] += left
            self._queue.clear()
            self._queued_bytes = 0
        self._stop.set()
        self._wake.set()
        for t in (self._sender, self._connector):
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()) + 0.5)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                log.debug("aipulse: producer close failed", exc_info=True)
        st = self.stats()
        lost = sum(st["dropped"].values())
        if lost:
            log.warning("aipulse: closed; %d of %d events were dropped %s",
                        lost, st["emitted"], {k: v for k, v in st["dropped"].items() if v})

    # ------------------------------------------------------------------ internals

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._processing = 0
        self._inflight = 0
        self._inflight_bytes = 0
        self.emitted = 0
        self.sent = 0
        self.dropped = {r: 0 for r in DROP_REASONS}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acked = threading.Event()
        self._producer = None
        self._stalled = False
        self._last_ack = 0.0
        self._unavailable = True  # until the connector has a producer
        self._refused: str | None = None  # "auth" / "tls" while Kafka refuses our credentials
        self._started = False
        self._closed = False
        self._sender: threading.Thread | None = None
        self._connector: threading.Thread | None = None
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        # The parent's threads do not exist in the child and its producer's sockets are
        # shared with the parent: start from scratch, lazily, at the child's first event.
        self._reset_state()

    def _start(self) -> None:
        """Called under the lock at the first submit (and the first after a fork)."""
        self._started = True
        self._pid = os.getpid()
        self._sender = threading.Thread(target=self._run_sender, name="aipulse-sender", daemon=True)
        self._connector = threading.Thread(target=self._run_connector, name="aipulse-connector", daemon=True)
        self._sender.start()
        self._connector.start()

    def _warn(self, reason: str, msg: str, *args: Any, exc_info: bool = False) -> None:
        """At most one warning per reason per ``warn_interval_s``: drops must not flood logs."""
        now = time.monotonic()
        last = self._last_warn.get(reason)
        if last is None or now - last >= self._cfg.warn_interval_s:
            self._last_warn[reason] = now
            log.warning(msg, *args, exc_info=exc_info)

    def _drop(self, reason: str, n: int = 1, settles_processing: bool = False) -> None:
        with self._lock:
            self.dropped[reason] += n
            if settles_processing:
                self._processing = 0

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
                self._drain()
            except Exception:  # the one guard: nothing of ours may kill the thread or reach the app
                log.exception("aipulse: internal error in the sender")
            if self._stop.is_set():
                return

    def _drain(self) -> None:
        q = self._queue
        while q and not self._closed and self._ready():
            with self._lock:
                if not q:
                    return
                item, nbytes = q.popleft()
                self._queued_bytes -= nbytes
                self._processing = 1
            try:
                self._send_one(item)
            except Exception:
                self._drop("internal_error", settles_processing=True)
                self._warn("internal_error", "aipulse: internal error, event dropped", exc_info=True)
            finally:
                with self._lock:
                    self._processing = 0

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

    def _send_one(self, item: Any) -> None:
        try:
            key, value, ts_ms = self._prepare(item)
        except Invalid as err:
            self._drop("invalid", settles_processing=True)
            self._warn("invalid", "aipulse: invalid event dropped: %s", err)
            return
        size = len(value)
        with self._lock:
            # The event moves from "processing" to "in flight" in one step, so that stats()
            # never counts it twice (emitted == sent + dropped + queued at every instant).
            self._processing = 0
            self._inflight += 1
            self._inflight_bytes += size
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

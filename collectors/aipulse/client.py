"""The SDK client: one per process, created by :func:`init`, a no-op before that.

The application's thread only builds a small dict and hands it to ``client.submit`` (the
transport's :meth:`~aipulse.transport.Transport.submit` itself, no layer between); everything
costly (user-id hashing, text redaction, pricing, contract validation, JSON) happens on the
sender thread in :meth:`Client.prepare`. The sender thread also sends the client's delivery
ledger: an ``sdk_stats`` event with its counters every ``ledger_interval_s`` and at close.

    >>> import aipulse
    >>> aipulse.record(feature="chat", model="gpt-4o", latency_ms=5.0)   # before init: no-op
    '...'
    >>> aipulse.stats()["enabled"]
    False
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from typing import Any

from pydantic import ValidationError

from . import contract
from .config import Config
from .costs import Pricer
from .governance import Governance
from .transport import DROP_REASONS, FlushResult, Invalid, Transport, register_exit_hook

log = logging.getLogger("aipulse")

SDK_VERSION = "0.1.0"

_INTERACTION_FIELDS = frozenset(contract.Interaction.model_fields) | {"kind"}
_MODELS = {"interaction": contract.Interaction, "feedback": contract.Feedback, "evaluation": contract.Evaluation}

# ---------------------------------------------------------------- ids

# A random per-process prefix and a counter: unique like a uuid4, ten times cheaper to make.


def _id_sequence() -> Any:
    """``next`` of a fresh id sequence: a new random prefix, then a counter in hex. The whole
    step runs in C (a map over a counter), so the caller pays one call per id."""
    return map((os.urandom(8).hex() + "%010x").__mod__, itertools.count(1)).__next__


# The SDK's hot paths call ``next_id()`` through this module (a forked child rebinds it).
next_id = _id_sequence()


def new_id() -> str:
    """A new event id (26 hex characters), unique across processes and forks."""
    return next_id()


def _new_id_space() -> None:
    global next_id
    next_id = _id_sequence()


os.register_at_fork(after_in_child=_new_id_space)


# ---------------------------------------------------------------- clients


# Kafka timestamps further ahead than this are replaced by now (see prepare()).
MAX_KAFKA_TS_AHEAD_MS = 5 * 60 * 1000

class NoopClient:
    """Answers every call before :func:`init` (or with ``disabled=True``): nothing is sent."""

    enabled = False
    config: Config | None = None

    def submit(self, kind: str, fields: dict) -> bool:
        return False

    def count_refused(self, reason: str) -> None:
        return None

    def flush(self, timeout: float | None = None) -> FlushResult:
        return FlushResult()

    def close(self, timeout: float | None = None) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"enabled": False, "emitted": 0, "sent": 0, "dropped": {r: 0 for r in DROP_REASONS},
                "queued": 0, "queue_events": 0, "queue_bytes": 0, "inflight_events": 0,
                "inflight_bytes": 0, "kafka_connected": False}


class Client:
    """Owns the transport and the per-event preparation done on the sender thread."""

    enabled = True

    def __init__(self, config: Config, producer_factory: Any = None):
        self.config = config
        self._service = config.service
        self._governance = Governance(config)
        self._pricer = Pricer(config.price_overrides)
        self._ledger_interval = config.ledger_interval_s
        self._new_instance()
        self.transport = Transport(config, self.prepare, producer_factory,
                                   on_tick=self._tick if self._ledger_interval else None)
        # submit(kind, fields): queue one event dict on the caller's thread; never raises,
        # never blocks. The transport's own method, so the caller pays for one frame only.
        self.submit = self.transport.submit

    @property
    def instance_id(self) -> str:
        """This SDK instance in the ledger: random, with the pid; new in a forked child."""
        if self._instance_pid != os.getpid():
            self._new_instance()
        return self._instance_id

    def _new_instance(self) -> None:
        self._instance_pid = os.getpid()
        self._instance_id = f"{os.urandom(6).hex()}-{self._instance_pid}"
        self._next_ledger = time.monotonic() + self._ledger_interval

    def count_refused(self, reason: str) -> None:
        """An API call that could not even be queued still counts: emitted and dropped."""
        self.transport.count_refused(reason)

    def flush(self, timeout: float | None = None) -> FlushResult:
        return self.transport.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        last = (lambda: self._send_ledger(final=True)) if self._ledger_interval else None
        self.transport.close(timeout, last_words=last)

    def stats(self) -> dict[str, Any]:
        st = self.transport.stats()
        st["enabled"] = True
        return st

    # ------------------------------------------------ sender thread

    def ledger_event(self, final: bool = False) -> contract.SdkStats:
        """This instance's counters as an ``sdk_stats`` event (see :class:`contract.SdkStats`)."""
        st = self.transport.stats()
        return contract.SdkStats(
            event_id=new_id(), ts=time.time(), service=self._service,
            instance_id=self.instance_id, pid=os.getpid(), sdk_version=SDK_VERSION,
            interval_s=self._ledger_interval, final=final, emitted=st["emitted"],
            sent=st["sent"], queued=st["queued"],
            dropped={r: n for r, n in st["dropped"].items() if n})

    def _send_ledger(self, final: bool = False) -> None:
        ev = self.ledger_event(final)
        self.transport.send_own(ev.key, ev.model_dump_json(exclude_none=True).encode(),
                                int(ev.ts.timestamp() * 1000))

    def _tick(self) -> None:
        """Called by the sender thread at each wake-up: the ledger, when its time has come."""
        if self._instance_pid != os.getpid():  # a forked child is a new instance
            self._new_instance()
        if time.monotonic() >= self._next_ledger:
            self._next_ledger = time.monotonic() + self._ledger_interval
            self._send_ledger()

    def prepare(self, item: tuple[str, dict]) -> tuple[bytes, bytes, int]:
        """Event dict -> (key, JSON value, timestamp ms); raises :class:`Invalid`."""
        kind, fields = item
        event = dict(fields)
        event["kind"] = kind
        event.setdefault("service", self._service)
        if kind == "interaction":
            _fold_extras(event)
            self._governance.apply(event)
            self._pricer.fill(event)
        elif kind == "feedback":
            self._governance.apply(event)
        model_cls = _MODELS[kind]
        try:
            model = model_cls.model_validate(event)
        except ValidationError as err:
            raise Invalid(f"{kind}: {contract._reason(err)}"[:500]) from None
        value = model.model_dump_json(exclude_none=True).encode()
        ts_ms = int(model.ts.timestamp() * 1000)
        # Kafka's timestamp is the event time, except when the event claims to be from the
        # future: brokers refuse timestamps far ahead (Kafka 4: 1 h), and a refused record
        # fails its whole batch, neighbours included. The worker judges `ts` itself (DLQ).
        now_ms = int(time.time() * 1000)
        if ts_ms > now_ms + MAX_KAFKA_TS_AHEAD_MS:
            ts_ms = now_ms
        return model.key, value, ts_ms


def _fold_extras(event: dict) -> None:
    """Keywords that are not contract fields become ``attributes`` (instead of being lost)."""
    extras = [k for k in event if k not in _INTERACTION_FIELDS]
    if not extras:
        return
    attrs = dict(event.get("attributes") or {})
    for k in extras:
        v = event.pop(k)
        if not (v is None or isinstance(v, (str, int, float, bool))):
            v = str(v)[: contract.MAX_ATTRIBUTE_LEN]
        elif isinstance(v, float) and not math.isfinite(v):
            v = None
        attrs.setdefault(k, v)
    event["attributes"] = attrs


# ---------------------------------------------------------------- the process-wide client

_client: Client | NoopClient = NoopClient()
_lock = threading.Lock()
_atexit_registered = False


def get_client() -> Client | NoopClient:
    return _client


def init(**options: Any) -> Client | NoopClient:
    """Configure the SDK from ``options`` and ``AIPULSE_*`` variables; see :mod:`aipulse.config`.

    Raises ``ValueError`` at once for a bad option. Calling ``init`` again replaces the client
    (the old one is flushed and closed). Returns the client.
    """
    global _client, _atexit_registered
    producer_factory = options.pop("producer_factory", None)
    config = Config.load(**options)
    new: Client | NoopClient = NoopClient() if config.disabled else Client(config, producer_factory)
    with _lock:
        old, _client = _client, new
        if not _atexit_registered:
            # Not atexit.register: kafka-python's producers register exit hooks of their own
            # later, which would run (closing the producer) before ours delivers the tail.
            register_exit_hook(_close_at_exit)
            _atexit_registered = True
    old.close()
    return new


def _close_at_exit() -> None:
    try:
        _client.close()
    except Exception:  # never let our shutdown spoil the app's exit
        log.debug("aipulse: close at exit failed", exc_info=True)


def flush(timeout: float | None = None) -> FlushResult:
    """Wait up to ``timeout`` seconds for queued events to be sent or dropped.

    Returns a :class:`~aipulse.transport.FlushResult`: ``delivered`` and ``dropped`` (by
    reason) since the previous flush, and ``pending``; it is true when nothing is pending.

        >>> r = aipulse.flush(5)                              # doctest: +SKIP
        >>> r.delivered, r.dropped, r.pending                 # doctest: +SKIP
        (120, {'queue_full': 3}, 0)
    """
    try:
        return _client.flush(timeout)
    except Exception:
        log.debug("aipulse: flush failed", exc_info=True)
        return FlushResult(pending=-1)


def close(timeout: float | None = None) -> None:
    """Flush with a deadline, then stop; later events are no-ops. Also runs at exit."""
    global _client
    with _lock:
        old, _client = _client, NoopClient()
    try:
        old.close(timeout)
    except Exception:
        log.debug("aipulse: close failed", exc_info=True)


def stats() -> dict[str, Any]:
    """``{"emitted", "sent", "dropped": {reason: n}, "queued", ...}`` of the current client.

    ``emitted == sent + sum(dropped.values()) + queued`` at all times.
    """
    return _client.stats()


def _refused() -> None:
    try:
        _client.count_refused("invalid")
    except Exception:
        pass


def record(**fields: Any) -> str:
    """Emit one complete interaction measured elsewhere (give ``latency_ms``; ``ts`` defaults to now).

        >>> iid = record(feature="import", model="gpt-4o", latency_ms=812.0, ts=1700000000)

    Returns the interaction id (``interaction_id``, else ``event_id``, else a new one).
    """
    try:
        iid = fields.get("interaction_id") or fields.get("event_id")
        if not iid:
            iid = fields["event_id"] = next_id()
        elif "event_id" not in fields:
            fields["event_id"] = next_id()
        if "ts" not in fields:
            fields["ts"] = time.time()
        _client.submit("interaction", fields)
        return iid
    except Exception:  # the guard: nothing reaches the app, and the event is still counted
        _refused()
        return ""


def feedback(interaction_id: str, feedback_type: str, *, score: float | None = None,
             user_id: str | None = None, correction: str | None = None, comment: str | None = None,
             **fields: Any) -> str:
    """Record what a user or operator said about an interaction, later.

    ``feedback_type``: thumbs_up, thumbs_down, task_completed, task_failed,
    escalation_resolved, human_correction. Returns the feedback's event id.

        >>> eid = feedback("0123abcd", "thumbs_down", comment="wrong invoice total")
    """
    try:
        fields["interaction_id"] = interaction_id
        fields["feedback_type"] = feedback_type
        for name, value in (("score", score), ("user_id", user_id), ("correction", correction),
                            ("comment", comment)):
            if value is not None:
                fields[name] = value
        eid = fields.setdefault("event_id", next_id())
        fields.setdefault("ts", time.time())
        _client.submit("feedback", fields)
        return eid
    except Exception:  # the guard: nothing reaches the app, and the event is still counted
        _refused()
        return ""


def evaluate(interaction_id: str, *, correct: bool | None = None, score: float | None = None,
             source: str = "ground_truth", evaluator: str = "", label: str = "", **fields: Any) -> str:
    """Judge an interaction's answer: ``correct`` and/or ``score`` (0..1), with its ``source``
    (ground_truth, shadow, human, auto). Returns the evaluation's event id.

        >>> eid = evaluate("0123abcd", correct=True, source="human", evaluator="qa-team")
    """
    try:
        fields["interaction_id"] = interaction_id
        fields["source"] = source
        if correct is not None:
            fields["correct"] = correct
        if score is not None:
            fields["score"] = score
        if evaluator:
            fields["evaluator"] = evaluator
        if label:
            fields["label"] = label
        eid = fields.setdefault("event_id", next_id())
        fields.setdefault("ts", time.time())
        _client.submit("evaluation", fields)
        return eid
    except Exception:  # the guard: nothing reaches the app, and the event is still counted
        _refused()
        return ""

"""SDK configuration: keyword arguments first, then ``AIPULSE_*`` environment variables, then
the named defaults below.

    >>> from aipulse.config import Config
    >>> cfg = Config.load(service="support", max_queue_events=500)
    >>> cfg.topic, cfg.max_queue_events
    ('aipulse.events', 500)

A mistake in configuration fails at once with a precise ``ValueError`` (at ``init()``), while
the emit path never raises.

Environment variables (all optional):

==============================  ============================================================
``AIPULSE_KAFKA_BOOTSTRAP``     ``host:port[,host:port]`` of the Kafka brokers
``AIPULSE_TOPIC``               topic for all events (default ``aipulse.events``)
``AIPULSE_SERVICE``             service name stamped on every event
``AIPULSE_USER_SALT``           secret salt for hashing user ids
``AIPULSE_HASH_USER_IDS``       ``0`` to send user ids as given (default ``1``)
``AIPULSE_CAPTURE_TEXT``        ``1`` to send prompt/response/correction text (default ``0``)
``AIPULSE_MAX_TEXT_CHARS``      truncation length for captured text
``AIPULSE_MAX_QUEUE_EVENTS``    bound of the in-process buffer, in events
``AIPULSE_MAX_QUEUE_BYTES``     bound of the in-process buffer, in wire bytes
``AIPULSE_MAX_INFLIGHT_BYTES``  bound of bytes handed to Kafka but not yet acknowledged
``AIPULSE_MAX_EVENT_BYTES``     largest single event (wire bytes); bigger ones: ``oversized``
``AIPULSE_LEDGER_INTERVAL_S``   seconds between ``sdk_stats`` ledger events (``0``: none)
``AIPULSE_COMPRESSION``         ``lz4``, ``gzip``, ``zstd``, ``snappy`` or ``none``
``AIPULSE_DISABLED``            ``1`` turns the SDK into a no-op
``AIPULSE_KAFKA_SECURITY_*``    TLS and SASL (``AIPULSE_KAFKA_SECURITY_PROTOCOL``,
                                ``AIPULSE_KAFKA_SASL_*``, ``AIPULSE_KAFKA_SSL_*``): see
                                :mod:`aipulse.kafka_security` and docs/security.md
==============================  ============================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from .contract import MAX_TEXT_LEN
from .kafka_security import KafkaSecurity

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TOPIC = "aipulse.events"
DEFAULT_SERVICE = "default"

# The buffer between the app's threads and the sender thread. 10k events of ~0.5 KB is about
# 5 MB: a few seconds of a busy service, enough to ride out a broker leader election.
DEFAULT_MAX_QUEUE_EVENTS = 10_000
DEFAULT_MAX_QUEUE_BYTES = 16 * 1024 * 1024
# kafka-python 3 has no buffer_memory bound of its own: we cap what waits for acks ourselves.
DEFAULT_MAX_INFLIGHT_BYTES = 8 * 1024 * 1024
# One event (its JSON) larger than this is dropped as `oversized` before it is held. The same
# variable and default as the worker's limit, above which it dead-letters a message; a
# contract-valid event (64 attributes of 1,000 characters, texts of 32,000) stays under it.
DEFAULT_MAX_EVENT_BYTES = 256 * 1024
# Every SDK instance sends its own counters (a `sdk_stats` event) this often, and at close.
DEFAULT_LEDGER_INTERVAL_S = 60.0

DEFAULT_COMPRESSION = "lz4"          # falls back to gzip when the lz4 module is missing
DEFAULT_LINGER_MS = 20               # batch for 20 ms: fewer, fuller requests
DEFAULT_BATCH_SIZE = 64 * 1024
DEFAULT_DELIVERY_TIMEOUT_MS = 30_000  # an undeliverable event is dropped (and counted) after this
DEFAULT_REQUEST_TIMEOUT_MS = 10_000
DEFAULT_CONNECT_TIMEOUT_MS = 3_000    # one bootstrap attempt of the background connector
DEFAULT_MAX_BLOCK_MS = 1_000          # longest the *sender* thread waits in producer.send
DEFAULT_RECONNECT_BACKOFF_MAX_MS = 2_000  # how soon a returning broker is noticed

DEFAULT_SEND_INTERVAL_S = 0.05       # the sender thread wakes at least this often
DEFAULT_SHUTDOWN_TIMEOUT_S = 2.0     # close() at interpreter exit waits at most this long
DEFAULT_WARN_INTERVAL_S = 60.0       # at most one warning per drop reason per minute

DEFAULT_MAX_TEXT_CHARS = 4_000
DEFAULT_USER_SALT = ""               # empty: warn once, hash with the service name as salt

COMPRESSIONS = ("lz4", "gzip", "zstd", "snappy", "none")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Config field -> environment variable.
ENV_VARS = {
    "bootstrap_servers": "AIPULSE_KAFKA_BOOTSTRAP",
    "topic": "AIPULSE_TOPIC",
    "service": "AIPULSE_SERVICE",
    "user_salt": "AIPULSE_USER_SALT",
    "hash_user_ids": "AIPULSE_HASH_USER_IDS",
    "capture_text": "AIPULSE_CAPTURE_TEXT",
    "max_text_chars": "AIPULSE_MAX_TEXT_CHARS",
    "max_queue_events": "AIPULSE_MAX_QUEUE_EVENTS",
    "max_queue_bytes": "AIPULSE_MAX_QUEUE_BYTES",
    "max_inflight_bytes": "AIPULSE_MAX_INFLIGHT_BYTES",
    "max_event_bytes": "AIPULSE_MAX_EVENT_BYTES",
    "ledger_interval_s": "AIPULSE_LEDGER_INTERVAL_S",
    "compression": "AIPULSE_COMPRESSION",
    "disabled": "AIPULSE_DISABLED",
}


@dataclass(frozen=True)
class Config:
    """Everything the SDK can be told. Build it with :meth:`load`."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic: str = DEFAULT_TOPIC
    service: str = DEFAULT_SERVICE
    disabled: bool = False

    # governance
    hash_user_ids: bool = True
    user_salt: str = DEFAULT_USER_SALT
    capture_text: bool = False
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    redact: Callable[[str, str], str | None] | None = None

    # cost: model -> (USD per million input tokens, USD per million output tokens)
    price_overrides: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    # buffering and transport
    max_queue_events: int = DEFAULT_MAX_QUEUE_EVENTS
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ledger_interval_s: float = DEFAULT_LEDGER_INTERVAL_S
    compression: str = DEFAULT_COMPRESSION
    linger_ms: int = DEFAULT_LINGER_MS
    batch_size: int = DEFAULT_BATCH_SIZE
    delivery_timeout_ms: int = DEFAULT_DELIVERY_TIMEOUT_MS
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS
    max_block_ms: int = DEFAULT_MAX_BLOCK_MS
    reconnect_backoff_max_ms: int = DEFAULT_RECONNECT_BACKOFF_MAX_MS
    send_interval_s: float = DEFAULT_SEND_INTERVAL_S
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    warn_interval_s: float = DEFAULT_WARN_INTERVAL_S
    # TLS and SASL, from AIPULSE_KAFKA_SECURITY_PROTOCOL / _SASL_* / _SSL_* (kafka_security.py)
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    # extra KafkaProducer keyword arguments (client_id...); they win over kafka_security's
    kafka_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Arguments win over ``AIPULSE_*`` variables, which win over defaults."""
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        unknown = set(overrides) - set(known)
        if unknown:
            raise ValueError(f"unknown aipulse option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, var in ENV_VARS.items():
            if name in overrides or var not in env:
                continue
            values[name] = _coerce(name, known[name].default, env[var], var)
        if overrides.get("kafka_security") is None:
            values["kafka_security"] = KafkaSecurity.from_env(env)  # KafkaSecurityError is a ValueError
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> "Config":
        cfg = replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if not self.bootstrap_servers or not isinstance(self.bootstrap_servers, str):
            raise ValueError("bootstrap_servers must be 'host:port[,host:port...]'")
        if not self.topic or len(self.topic) > 249:
            raise ValueError("topic must be 1..249 characters")
        if not self.service:
            raise ValueError("service must not be empty")
        for name in ("max_queue_events", "max_queue_bytes", "max_inflight_bytes", "max_event_bytes", "batch_size",
                     "delivery_timeout_ms", "request_timeout_ms", "connect_timeout_ms"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("linger_ms", "max_block_ms", "reconnect_backoff_max_ms"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.send_interval_s <= 0 or self.shutdown_timeout_s < 0 or self.warn_interval_s < 0:
            raise ValueError("send_interval_s must be > 0; shutdown_timeout_s and warn_interval_s >= 0")
        if not (self.ledger_interval_s == 0 or self.ledger_interval_s >= 1):
            raise ValueError(f"ledger_interval_s must be 0 (off) or >= 1, got {self.ledger_interval_s!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if not 0 < self.max_text_chars <= MAX_TEXT_LEN:
            raise ValueError(f"max_text_chars must be in 1..{MAX_TEXT_LEN}")
        if self.delivery_timeout_ms < self.linger_ms + self.request_timeout_ms:
            raise ValueError("delivery_timeout_ms must be >= linger_ms + request_timeout_ms")
        if self.redact is not None and not callable(self.redact):
            raise ValueError("redact must be a callable (text, field_name) -> str | None")
        for model, prices in dict(self.price_overrides).items():
            if (not isinstance(prices, (tuple, list)) or len(prices) != 2
                    or any(not isinstance(p, (int, float)) or p < 0 for p in prices)):
                raise ValueError(f"price_overrides[{model!r}] must be (usd_per_mtok_in, usd_per_mtok_out)")


def _coerce(name: str, default: Any, raw: str, var: str) -> Any:
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{var}={raw!r} is not a boolean (use 1/0)")
    if isinstance(default, int):
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not a number") from None
    return text

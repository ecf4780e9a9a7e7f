"""One validated configuration for every stage of the stack, read from the environment.

Every default a user might tune is a named field here, with the environment variable that
sets it (``AIPULSE_`` + the field name in capitals)::

    >>> from aipulse_stream.config import Settings
    >>> s = Settings.from_env({"AIPULSE_TOPIC_PARTITIONS": "8"})
    >>> s.topic, s.topic_partitions
    ('aipulse.events', 8)

A bad value fails at once with one line naming the variable (:class:`ConfigError`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from aipulse.kafka_security import KafkaSecurity, KafkaSecurityError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "AIPULSE_"


class ConfigError(ValueError):
    """A configuration mistake, worded as one line saying what to fix."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where things are. Unset bootstrap/URL means "the local stack started by `aipulse up`".
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers host:port[,host:port]")
    clickhouse_url: str | None = Field(
        None, description="ClickHouse HTTP URL, e.g. http://user:pass@host:8123; unset = local chDB endpoint"
    )
    # Kafka TLS and SASL (one shape with the SDK: aipulse/kafka_security.py, docs/security.md).
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)")
    kafka_sasl_username: str | None = Field(None, description="SASL user (with SASL_*)")
    kafka_sasl_password: str | None = Field(None, repr=False, description="SASL password (with SASL_*)")
    kafka_ssl_cafile: str | None = Field(None, description="PEM CA file for the brokers' certificates; unset = system CAs")
    kafka_ssl_certfile: str | None = Field(None, description="PEM client certificate, for mutual TLS")
    kafka_ssl_keyfile: str | None = Field(None, description="PEM key of the client certificate")
    kafka_port: int = Field(0, ge=0, le=65535, description="port of the local Kafka broker; 0 = a free port")
    clickhouse_port: int = Field(0, ge=0, le=65535, description="port of the local ClickHouse endpoint; 0 = a free port")
    home: Path = Field(Path(".aipulse"), description="state folder of the local stack (pids, logs, data)")

    # Topics.
    topic: str = Field("aipulse.events", description="the events topic (all kinds, keyed by interaction id)")
    dlq_topic: str = Field("aipulse.events.dlq", description="dead letters: original bytes + reason header")
    alerts_topic: str = Field("aipulse.alerts", description="firing and resolved alerts")
    topic_partitions: int = Field(4, ge=1, le=1024, description="partitions of the events topic when created")

    # Storage.
    database: str = Field("aipulse", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="ClickHouse database")
    raw_ttl_days: int = Field(90, ge=1, description="raw events are kept this long")
    metrics_ttl_days: int = Field(400, ge=1, description="window rows and rollups are kept this long")

    # Worker.
    worker_group: str = Field("aipulse-worker", description="Faust app id = Kafka consumer group")
    batch_max_events: int = Field(5000, ge=1, description="events per insert batch at most")
    batch_max_wait_s: float = Field(0.5, gt=0, description="a batch is flushed after this long at most")
    max_event_bytes: int = Field(256 * 1024, ge=1024, description="larger messages go to the DLQ (the SDK drops them as `oversized` before sending)")
    max_future_s: float = Field(600, ge=0, description="events with ts further ahead of now go to the DLQ")
    max_past_s: float = Field(30 * 86400, ge=0, description="events with ts further behind now go to the DLQ")
    worker_metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 = a free port")
    worker_metrics_host: str = Field("127.0.0.1", min_length=1,
                                     description="address /metrics listens on (0.0.0.0 in a container)")
    insert_retry_max_s: float = Field(30, gt=0, description="longest backoff between insert retries")
    clickhouse_connections: int = Field(4, ge=2, le=32,
                                        description="ClickHouse connections per worker (a batch's tables are inserted at once)")

    # Windowed metrics.
    window_s: int = Field(10, ge=1, le=3600, description="base tumbling window, seconds")
    allowed_lateness_s: int = Field(60, ge=0, description="events behind the watermark by more are counted late")
    offset_block: int = Field(2000, ge=1, description="offsets per idempotent contribution row (see docs)")
    low_confidence_threshold: float = Field(0.5, ge=0, le=1, description="confidence below this counts as low")
    join_horizon_s: int = Field(7 * 86400, ge=1, description="feedback later than this after its interaction is orphaned")

    # Alerting.
    alertmanager_url: str | None = Field(None, description="Alertmanager base URL, http://user:pass@host:9093 with basic auth; unset = the local one")
    alert_webhook_url: str | None = Field(None, description="where the local Alertmanager delivers notifications")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build from ``AIPULSE_*`` variables (empty values count as unset), then ``overrides``."""
        env = os.environ if env is None else env
        values: dict = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls(**values)
        except ValidationError as err:
            e = err.errors()[0]
            field = str(e["loc"][0]) if e.get("loc") else "?"
            raise ConfigError(
                f"bad setting {ENV_PREFIX}{field.upper()}={values.get(field)!r}: {e['msg']}"
            ) from None
        try:
            settings.kafka_security  # a bad TLS/SASL combination fails here, naming its variable
        except KafkaSecurityError as err:
            raise ConfigError(str(err)) from None
        return settings

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The Kafka TLS/SASL settings (raises KafkaSecurityError naming a bad variable)."""
        return KafkaSecurity(protocol=self.kafka_security_protocol, sasl_mechanism=self.kafka_sasl_mechanism,
                             sasl_username=self.kafka_sasl_username, sasl_password=self.kafka_sasl_password,
                             ssl_cafile=self.kafka_ssl_cafile, ssl_certfile=self.kafka_ssl_certfile,
                             ssl_keyfile=self.kafka_ssl_keyfile)

    @property
    def state_dir(self) -> Path:
        return self.home.resolve()


def env_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README's table comes from here."""
    rows = []
    for name, f in Settings.model_fields.items():
        default = f.default if f.default is not None else ""
        rows.append((ENV_PREFIX + name.upper(), str(default), f.description or ""))
    return rows

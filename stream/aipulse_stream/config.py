"""One validated configuration for every stage of the stack, read from the environment.

Each stage has its own config class with named defaults (:class:`ConnectionConfig`,
:class:`WorkerConfig`, :class:`AlertsConfig`, ...); :class:`Settings` composes them all into
the one settings object the commands and the worker get. Every ``AIPULSE_*`` variable of the
stack is a field of one of them (``AIPULSE_`` + the field name in capitals); the README's table
is generated from :data:`STAGES` (scripts/readme_env_table.py), and a test fails on code that
reads an ``AIPULSE_*`` variable itself (tests/packaging/test_settings_env.py)::

    >>> from aipulse_stream.config import Settings
    >>> s = Settings.from_env({"AIPULSE_TOPIC_PARTITIONS": "8"})
    >>> s.topic, s.topic_partitions
    ('aipulse.events', 8)

A module that needs only its own stage reads only that stage (same variables, same checks)::

    >>> AlertsConfig.from_env({"AIPULSE_ALERTS": "off"}).alerts
    False

A bad value fails at once with one line naming the variable (:class:`ConfigError`). (The SDK's
own variables are read by the SDK's config, :mod:`aipulse.config`; see docs/sdk.md.)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from aipulse.kafka_security import KafkaSecurity, KafkaSecurityError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "AIPULSE_"


# The events topic's records carry the broker's append time, not the producer's: validation
# judges an event's ts against its record's timestamp (transforms/validate.py), a clock that a
# replay reads back identically; with CreateTime the SDK's own stamp (the event's ts) would make
# the future/past limits judge the event against itself.
EVENTS_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}

class ConfigError(ValueError):
    """A configuration mistake, worded as one line saying what to fix."""


class StageConfig(BaseModel):
    """A stage's settings; :meth:`from_env` reads its fields' ``AIPULSE_*`` variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides):
        """Build from ``AIPULSE_*`` variables (empty values count as unset), then ``overrides``."""
        env = os.environ if env is None else env
        values: dict = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as err:
            e = err.errors()[0]
            field = str(e["loc"][0]) if e.get("loc") else "?"
            raise ConfigError(
                f"bad setting {ENV_PREFIX}{field.upper()}={values.get(field)!r}: {e['msg']}"
            ) from None


class ConnectionConfig(StageConfig):
    """Where the broker and the database are, and how to log in to the broker."""

    # Unset bootstrap/URL: the composition root (aipulse_cli) fills in the local stack's.
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


class LocalStackConfig(StageConfig):
    """The development stack that `aipulse up` runs (aipulse_local)."""

    kafka_port: int = Field(0, ge=0, le=65535, description="port of the local Kafka broker; 0 = a free port")
    clickhouse_port: int = Field(0, ge=0, le=65535, description="port of the local ClickHouse endpoint; 0 = a free port")
    home: Path = Field(Path(".aipulse"), description="state folder of the local stack (pids, logs, data)")
    kafka_jars: Path | None = Field(None, description="folder of the Kafka broker's jars; unset = .cache/kafka-jars "
                                    "in a checkout, else $XDG_CACHE_HOME/aipulse/kafka-jars")
    debug: bool = Field(False, description="the local ClickHouse endpoint logs every request (1 = on)")


class TopicsConfig(StageConfig):
    topic: str = Field("aipulse.events", description="the events topic (all kinds, keyed by interaction id)")
    dlq_topic: str = Field("aipulse.events.dlq", description="dead letters: original bytes + reason header")
    alerts_topic: str = Field("aipulse.alerts", description="firing and resolved alerts")
    topic_partitions: int = Field(4, ge=1, le=1024, description="partitions of the events topic when created")


class StorageConfig(StageConfig):
    database: str = Field("aipulse", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="ClickHouse database")
    raw_ttl_days: int = Field(90, ge=1, description="raw events are kept this long")
    metrics_ttl_days: int = Field(400, ge=1, description="window rows and rollups are kept this long")


class WorkerConfig(StageConfig):
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
    # Faust's own choices (its worker's -l option).
    log_level: str = Field("warn", pattern=r"^(?i:debug|info|warn|error|crit)$",
                           description="the worker's log level: debug, info, warn, error or crit")


class WindowsConfig(StageConfig):
    window_s: int = Field(10, ge=1, le=3600, description="base tumbling window, seconds")
    allowed_lateness_s: int = Field(60, ge=0, description="events behind the watermark by more are counted late")
    offset_block: int = Field(2000, ge=1, description="offsets per idempotent contribution row (see docs)")
    low_confidence_threshold: float = Field(0.5, ge=0, le=1, description="confidence below this counts as low")
    spend_top_k: int = Field(20, ge=1, le=1000, description="users kept exactly per window, feature and offset block in spend_top_window (docs/metrics.md)")
    join_horizon_s: int = Field(7 * 86400, ge=1, description="feedback later than this after its interaction is orphaned")


class AlertsConfig(StageConfig):
    """The streaming detector in the worker, and where its notifications go."""

    alerts: bool = Field(True, description="the worker's alert detector; off (or 0, false, no) disables it")
    alert_rules: Path | None = Field(None, description="the alert rule file; unset = the packaged aipulse_alerts/rules.yaml")
    alertmanager_url: str | None = Field(None, description="Alertmanager base URL, http://user:pass@host:9093 with basic auth; unset = the local one")
    # Alertmanager's receiver (aipulse_alerts.amconfig renders its config from these).
    alert_webhook_url: str | None = Field(None, description="Alertmanager's receiver: a webhook URL (JSON webhook format)")
    alert_slack_webhook_url: str | None = Field(None, repr=False, description="Alertmanager's receiver: a Slack incoming-webhook URL")
    alert_slack_channel: str | None = Field(None, description="the Slack channel (with AIPULSE_ALERT_SLACK_WEBHOOK_URL)")
    alert_email_to: str | None = Field(None, description="Alertmanager's receiver: e-mail address (needs AIPULSE_ALERT_SMTP_SMARTHOST)")
    alert_email_from: str | None = Field(None, description="sender of alert e-mails; unset = aipulse@localhost")
    alert_smtp_smarthost: str | None = Field(None, description="SMTP server host:port for alert e-mails")
    alert_smtp_username: str | None = Field(None, description="SMTP user for alert e-mails")
    alert_smtp_password: str | None = Field(None, repr=False, description="SMTP password for alert e-mails")


class GrafanaConfig(StageConfig):
    """What Grafana's provisioning files refer to (``$__env{AIPULSE_GRAFANA_...}``): Grafana reads
    these from its own environment (docker-compose.yml passes them); `aipulse grafana deploy`
    expands them from the command's environment."""

    grafana_ch_host: str | None = Field(None, description="Grafana's ClickHouse datasource: host")
    grafana_ch_port: int | None = Field(None, ge=1, le=65535, description="Grafana's ClickHouse datasource: HTTP port")
    grafana_ch_user: str | None = Field(None, description="Grafana's ClickHouse datasource: user (a read-only one)")
    grafana_ch_password: str | None = Field(None, repr=False, description="Grafana's ClickHouse datasource: password")
    grafana_ch_database: str | None = Field(None, description="Grafana's ClickHouse datasource: database")
    # The stack's own metrics (the workers' /metrics, scraped by Prometheus).
    prometheus_url: str | None = Field(None, description="Prometheus base URL (http://user:pass@host:9090) "
                                       "the dashboard previews query; unset = the local one")
    grafana_prometheus_url: str | None = Field(None, description="Grafana's Prometheus datasource URL")
    grafana_prometheus_user: str | None = Field(None, description="Grafana's Prometheus datasource: basic auth user")
    grafana_prometheus_password: str | None = Field(None, repr=False, description="Grafana's Prometheus datasource: password")
    grafana_alertmanager_url: str | None = Field(None, description="Grafana's Alertmanager datasource URL")
    grafana_alertmanager_user: str | None = Field(None, description="Grafana's Alertmanager datasource: basic auth user")
    grafana_alertmanager_password: str | None = Field(None, repr=False, description="Grafana's Alertmanager datasource: password")
    grafana_webhook_url: str | None = Field(None, description="set: the provisioned alerting gets a webhook contact point")
    grafana_slack_webhook_url: str | None = Field(None, repr=False, description="set: the provisioned alerting gets a Slack contact point")


class DemoConfig(StageConfig):
    demo_trace: Path | None = Field(None, description="`aipulse demo`'s trace folder (conv.csv, code.csv); unset = the "
                                    "shared Azure trace beside the checkout, else the packaged sample")


class FaultConfig(StageConfig):
    """Fault injection for the crash suite (tests/fault); unset in any real deployment."""

    test_crash_at: str | None = Field(None, description="fault suite only: the worker exits at <point>@<n> "
                                      "(aipulse_stream.crashpoints)")
    test_pause_at: str | None = Field(None, description="fault suite only: the worker freezes at <point>@<n>[,...]")


# The stages, in the README's order; Settings is all of them in one object.
STAGES: tuple[type[StageConfig], ...] = (ConnectionConfig, LocalStackConfig, TopicsConfig, StorageConfig,
                                         WorkerConfig, WindowsConfig, AlertsConfig, GrafanaConfig, DemoConfig,
                                         FaultConfig)


class Settings(*reversed(STAGES)):  # every stage's fields, flat: settings.topic, settings.window_s, ...
    """The one settings object: every stage's config composed (see :data:`STAGES`)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        settings = super().from_env(env, **overrides)
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
    """(variable, default, description) for every setting, stage by stage: the README's table."""
    rows = []
    for stage in STAGES:
        for name, f in stage.model_fields.items():
            default = f.default if f.default is not None else ""
            if isinstance(default, bool):
                default = "on" if default else "off"
            rows.append((ENV_PREFIX + name.upper(), str(default), f.description or ""))
    return rows

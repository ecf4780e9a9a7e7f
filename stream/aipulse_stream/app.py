"""The Faust App and its Kafka credentials (topics and the batch handler are wired in worker.py).

The app's transport is Faust's aiokafka transport with the batch consumer
(sources/kafka_batch.py): fetched batches go whole to ``app.batch_handler``.
"""
from __future__ import annotations

import asyncio

import faust
from aiokafka.conn import create_conn
from aipulse.kafka_security import KafkaSecurity, classify_failure

from .config import ConfigError, Settings
from .sources.kafka_batch import BatchTransport

COMMIT_INTERVAL_S = 1.0  # how often acked offsets are committed
# The client-side cap on one produce request: a dead letter carries the original message, which
# the broker accepted on the source topic, so the client must not refuse it first (the broker's
# own limit still applies; pipeline.py truncates a dead letter the broker refuses).
PRODUCER_MAX_REQUEST_BYTES = 16 * 1024 * 1024
METADATA_MAX_AGE_MS = 10_000  # how soon a consumer sees a topic's partitions again (see below)


def broker_credentials(security: KafkaSecurity) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's form of the TLS/SASL settings (None = PLAINTEXT)."""
    if security.uses_sasl:
        # With an SSL context Faust speaks SASL_SSL, without one SASL_PLAINTEXT.
        return faust.SASLCredentials(username=security.sasl_username, password=security.sasl_password,
                                     mechanism=security.sasl_mechanism, ssl_context=security.ssl_context())
    if security.uses_ssl:
        return faust.SSLCredentials(security.ssl_context())
    return None


PREFLIGHT_TIMEOUT_S = 15.0


def check_credentials(settings: Settings) -> None:
    """Raise ConfigError (one line naming the variable) if a broker refuses our TLS/SASL settings.

    Faust and aiokafka retry a refused login forever, logging "Unable to bootstrap"; one
    connection made here first turns a wrong password into an exit with what to fix. A broker
    that is down is not an error here: the worker waits for it as before.
    """
    security = settings.kafka_security
    if security.is_plaintext or not settings.kafka_bootstrap:
        return
    for server in (b.strip() for b in settings.kafka_bootstrap.split(",") if b.strip()):
        try:
            asyncio.run(asyncio.wait_for(_login(server, security), PREFLIGHT_TIMEOUT_S))
        except Exception as err:
            kind = classify_failure(err)
            if kind:
                raise ConfigError(security.failure_line(kind, server)) from None
            continue  # unreachable: try the next one; Faust keeps trying them all
        return


async def _login(server: str, security: KafkaSecurity) -> None:
    """Connect to one broker with TLS/SASL (aiokafka's own handshake, as Faust will) and leave."""
    host, _, port = server.rpartition(":")
    conn = await create_conn(host, int(port), client_id="aipulse-preflight", **security.client_options())
    conn.close()


class AipulseApp(faust.App):
    """A Faust app whose consumer hands fetched batches to ``batch_handler`` (set before start)."""

    batch_handler = None
    aipulse_settings: Settings | None = None

    def _new_transport(self):
        return BatchTransport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> AipulseApp:
    app = AipulseApp(
        settings.worker_group,
        broker=[f"kafka://{b.strip()}" for b in (settings.kafka_bootstrap or "").split(",") if b.strip()],
        broker_credentials=broker_credentials(settings.kafka_security),
        store="memory://",            # no Faust tables: window state is rebuilt from Kafka (see pipeline.py)
        datadir=str(settings.state_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=COMMIT_INTERVAL_S,
        producer_acks=-1,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        stream_buffer_maxsize=max(4096, settings.batch_max_events * 2),
        autodiscover=False,
        # Unacked events of an open offset block are held on purpose (pipeline.py): a rebalance
        # or a stop must not wait for them to be acked (they never would be); the next owner
        # re-reads them from the last committed block boundary.
        stream_wait_empty=False,
        # Heartbeats run beside processing, so a short session timeout only removes dead
        # workers sooner (a killed worker's partitions move after ~10 s); a batch waiting on
        # a ClickHouse outage is covered by the long poll interval instead.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_max_poll_interval=600.0,
        # A group that rejoined while the broker was still loading its metadata (just after a
        # restart) sees the topic with no partitions and gets none assigned; aiokafka rejoins
        # when the topic's metadata changes, but only notices at the next refresh (default
        # 5 min). Refreshing every 10 s bounds that idle time (fault suite, scenario 5).
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    app.aipulse_settings = settings
    return app

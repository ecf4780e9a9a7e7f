"""The Faust worker: wires the Kafka batch source to the pipeline.

Run it (the local stack's `aipulse up` does this for you)::

    AIPULSE_KAFKA_BOOTSTRAP=127.0.0.1:9092 AIPULSE_CLICKHOUSE_URL=http://127.0.0.1:8123 \\
        python -m aipulse_stream.worker

Faust runs the consumer group, the rebalances, the commits and the producer; each fetched batch
goes whole to the pipeline (sources/kafka_batch.py), which returns per partition the highest
offset that is stored; only those are acked, so Faust commits nothing that is not in
ClickHouse. Replays after a crash are made exact downstream (raw rows are skipped by stored
offset per table; window rows are replaced, see pipeline.py).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import sys
from typing import Sequence

from prometheus_client import start_http_server

from .app import check_credentials, create_app
from .config import EVENTS_TOPIC_CONFIG, ConfigError, Settings
from .pipeline import Pipeline
from .storage.clickhouse import ClickHouseUnavailable, resolve_url

log = logging.getLogger("aipulse.worker")

# The cyclic garbage collector took 25-35 % of the per-event CPU of the pipeline: a batch holds
# a million short-lived objects at once (almost none in cycles), and with the interpreter's
# thresholds every young collection walks all of them again. The worker turns it off and the
# pipeline collects between batches instead, when the batch is gone (pipeline.py).
# The interpreter's switch interval stays at its default (5 ms): a 0.5 ms interval, meant to hand
# the GIL back to the ClickHouse threads sooner, measured slower on this 2-CPU machine (17,548
# vs 20,705 events/s, 55.1 vs 44.9 µs CPU per event; bench/worker_throughput.py --events 700000,
# 2026-12-02): four writer threads then switch ten times as often.

def build(settings: Settings, services: Sequence = ()):
    """Create the app, declare its topics and attach the pipeline; returns the Faust app.

    ``services``: objects with ``start()`` and ``stop()`` (the composition root passes the alert
    evaluator) started with the app and stopped, flushing, before the pipeline stops.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    events = app.topic(settings.topic, value_type=bytes, key_type=bytes, value_serializer="raw",
                       key_serializer="raw", partitions=settings.topic_partitions, config=EVENTS_TOPIC_CONFIG)
    dlq = app.topic(settings.dlq_topic, value_type=bytes, key_type=bytes, value_serializer="raw",
                    key_serializer="raw", partitions=settings.topic_partitions)

    async def dlq_send(key, value, headers):
        fut = await dlq.send(key=key, value=value, headers=headers)
        await fut  # delivered (acks=all) before the source offset may be acked

    @app.task
    async def declare_topics():
        # Both topics, before the first batch: with broker auto-create off, a DLQ topic that
        # does not exist would stall the worker at its first invalid message.
        await events.maybe_declare()
        await dlq.maybe_declare()

    pipeline = Pipeline(settings, dlq_send=dlq_send, topic=settings.topic)
    app.batch_handler = pipeline
    app.topics.add(events)  # subscribe: the batch consumer reads it, no agent involved

    @app.task
    async def start_services():
        if services:
            # After the migrations: the evaluator's first queries read the tables they create.
            await pipeline.start()
        for service in services:
            service.start()

    @app.on_before_shutdown.connect
    async def stop_pipeline(app_, **kwargs):  # after the fetcher stopped (Faust's App.on_stop)
        for service in services:
            await asyncio.to_thread(service.stop)
        await pipeline.stop()

    app.aipulse_pipeline = pipeline
    return app


def main(argv: list[str] | None = None, services: Sequence = ()) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        if not settings.kafka_bootstrap:  # `aipulse worker` and `aipulse up` hand it the local stack's
            raise ConfigError("no Kafka configured: set AIPULSE_KAFKA_BOOTSTRAP (or start the worker with "
                              "`aipulse worker` next to a running `aipulse up`)")
        resolve_url(settings)
        check_credentials(settings)
    except (ConfigError, ClickHouseUnavailable) as err:
        print(f"aipulse worker: {err}", file=sys.stderr)
        return 2
    port = settings.worker_metrics_port
    start_http_server(port, addr=settings.worker_metrics_host)
    app = build(settings, services)
    # What exists now lives as long as the process (modules, the app, the pipeline): out of the
    # collector's sight, so that its rounds only look at what the batches make.
    gc.freeze()
    gc.disable()
    # Faust's own CLI runs the worker (signals, graceful stop, logging); no web server:
    # /metrics is prometheus_client's, on AIPULSE_WORKER_METRICS_PORT.
    sys.argv = [sys.argv[0], "worker", "--without-web", "-l", settings.log_level]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())

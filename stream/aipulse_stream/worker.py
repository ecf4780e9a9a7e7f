"""The Faust worker: reads the events topic in batches and runs the pipeline on each.

Run it (the local stack's `aipulse up` does this for you)::

    AIPULSE_KAFKA_BOOTSTRAP=127.0.0.1:9092 AIPULSE_CLICKHOUSE_URL=http://127.0.0.1:8123 \\
        python -m aipulse_stream.worker

Acks are manual (``noack_take``): an event is acked only when the pipeline says everything
up to its offset is stored, so Faust commits nothing that is not in ClickHouse. Faust's own
at-least-once redelivery after a crash is made exact downstream (raw rows are deduplicated by
offset and event_id; window rows are replaced, see pipeline.py).
"""
from __future__ import annotations

import collections
import logging
import os
import sys

from prometheus_client import start_http_server

from . import crashpoints
from . import selfmetrics as m
from .app import check_credentials, create_app
from .config import ConfigError, Settings
from .pipeline import Message, Pipeline
from .storage.clickhouse import ClickHouseUnavailable, resolve_url

log = logging.getLogger("aipulse.worker")


def build(settings: Settings):
    """Create the app, its topics and the agent; returns the Faust app."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    events = app.topic(settings.topic, value_type=bytes, key_type=bytes, value_serializer="raw",
                       key_serializer="raw", partitions=settings.topic_partitions)
    dlq = app.topic(settings.dlq_topic, value_type=bytes, key_type=bytes, value_serializer="raw",
                    key_serializer="raw", partitions=settings.topic_partitions)

    async def dlq_send(key, value, headers):
        fut = await dlq.send(key=key, value=value, headers=headers)
        await fut  # delivered (acks=all) before the source offset may be acked

    pipeline = Pipeline(settings, dlq_send=dlq_send, topic=settings.topic)
    held: dict[int, collections.deque] = collections.defaultdict(collections.deque)
    acked_upto: dict[int, int] = {}
    revoked_in_batch: set[int] = set()  # revoked while a batch was being processed

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs):
        parts = {tp.partition for tp in revoked if tp.topic == settings.topic}
        for p in parts:
            held.pop(p, None)  # a new owner re-reads them from the last commit
            acked_upto.pop(p, None)
        pipeline.revoke(parts)
        revoked_in_batch.update(parts)
        crashpoints.reached("during_revoke")

    @app.agent(events, name="aipulse-events")
    async def consume(stream):
        await pipeline.start()
        m.READY.set(1)
        async for batch in stream.noack_take(settings.batch_max_events, within=settings.batch_max_wait_s):
            msgs = []
            assigned = app.consumer.assignment()
            generation = app.consumer_generation_id
            for ev in batch:
                msg = ev.message
                if msg.tp not in assigned or msg.generation_id != generation:
                    # Revoked while buffered, or fetched before the last rebalance (a partition
                    # revoked and assigned again to this worker is re-read from the last commit):
                    # its owner reads it again from there.
                    continue
                held[msg.partition].append(ev)
                msgs.append(Message(msg.partition, msg.offset, msg.key, msg.value))
            revoked_in_batch.clear()
            ackable = await pipeline.process(msgs)
            if revoked_in_batch:
                # A rebalance ran while this batch was processed: the state it rebuilt for the
                # revoked partitions is stale (they restart from the last commit); forget it again.
                pipeline.revoke(set(revoked_in_batch))
                for p in revoked_in_batch:
                    ackable.pop(p, None)
                    held.pop(p, None)
                revoked_in_batch.clear()
            for p, upto in ackable.items():
                q = held.get(p)
                while q and q[0].message.offset <= upto:
                    await stream.ack(q.popleft())
                m.ACKED_OFFSET.labels(str(p)).set(upto)
            acked_upto.update(ackable)
            _export_lag(app, settings.topic, {msg.partition for msg in msgs}, acked_upto)

    app.aipulse_pipeline = pipeline
    return app


def _export_lag(app, topic: str, partitions: set[int], ackable: dict[int, int]) -> None:
    from faust.types import TP

    for p in partitions:
        try:
            hw = app.consumer.highwater(TP(topic, p))
        except Exception:  # not known yet (first fetch): skip this round
            continue
        if hw is None:
            continue
        m.CONSUMER_LAG.labels(str(p)).set(max(0, hw - (ackable.get(p, -1) + 1)))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        if not settings.kafka_bootstrap:
            from aipulse_local.state import StackState

            comp = StackState(settings.state_dir).get("kafka")
            if not comp:
                raise ConfigError("no Kafka configured: set AIPULSE_KAFKA_BOOTSTRAP or run `aipulse up`")
            settings = settings.model_copy(update={"kafka_bootstrap": comp["address"]})
        resolve_url(settings)
        check_credentials(settings)
    except (ConfigError, ClickHouseUnavailable) as err:
        print(f"aipulse worker: {err}", file=sys.stderr)
        return 2
    port = settings.worker_metrics_port
    start_http_server(port, addr=settings.worker_metrics_host)
    app = build(settings)
    # Faust's own CLI runs the worker (signals, graceful stop, logging); no web server:
    # /metrics is prometheus_client's, on AIPULSE_WORKER_METRICS_PORT.
    sys.argv = [sys.argv[0], "worker", "--without-web", "-l", os.environ.get("AIPULSE_LOG_LEVEL", "warn")]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Faust App and nothing else (topics and agents live in worker.py)."""
from __future__ import annotations

import faust

from .config import Settings

COMMIT_INTERVAL_S = 1.0  # how often acked offsets are committed


def create_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.worker_group,
        broker=[f"kafka://{b.strip()}" for b in (settings.kafka_bootstrap or "").split(",") if b.strip()],
        store="memory://",            # no Faust tables: window state is rebuilt from Kafka (see pipeline.py)
        datadir=str(settings.state_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=COMMIT_INTERVAL_S,
        producer_acks=-1,
        stream_buffer_maxsize=max(4096, settings.batch_max_events * 2),
        autodiscover=False,
        # A batch may wait on a ClickHouse outage: keep the consumer in its group meanwhile.
        broker_session_timeout=60.0,
        broker_heartbeat_interval=3.0,
        broker_max_poll_interval=600.0,
    )

"""The worker's own Prometheus metrics, declared in one place.

Dashboards (pipeline health) and alerts (pipeline lag or silence) are generated from the
names below, so a metric is renamed here or nowhere.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("aipulse_worker_consumed", "Messages read from the events topic", ["topic"])
STORED = Counter("aipulse_worker_stored", "Events stored in ClickHouse raw tables", ["kind"])
DUPLICATES = Counter("aipulse_worker_duplicates", "Events dropped because their event_id was just seen")
DEAD_LETTERED = Counter("aipulse_worker_dead_lettered", "Messages sent to the dead-letter topic", ["reason"])
INSERT_SECONDS = Histogram(
    "aipulse_worker_insert_seconds", "Time of one ClickHouse insert", ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INSERT_FAILURES = Counter("aipulse_worker_insert_failures", "Failed ClickHouse insert tries (retried)", ["table"])
BATCH_SIZE = Histogram(
    "aipulse_worker_batch_size", "Messages per processed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
READY = Gauge("aipulse_worker_ready", "1 once the worker has started and joined its consumer group")
CONSUMER_LAG = Gauge("aipulse_worker_consumer_lag", "Log end offset minus the committable offset, per partition", ["partition"])
# Beside the commit-based lag: offsets are committed a whole block at a time (docs/architecture.md),
# so while the stream pauses up to one block per partition stays uncommitted although it is read,
# counted and stored. This one is what the worker has not read yet.
UNREAD = Gauge("aipulse_worker_unread_offsets", "Log end offset minus the next offset the worker reads, per partition",
               ["partition"])
ACKED_OFFSET = Gauge("aipulse_worker_acked_offset", "Highest offset acked (committable) per partition", ["partition"])
LATE = Counter("aipulse_worker_late_events", "Events behind the watermark by more than the allowed lateness")
ORPHANED = Counter("aipulse_worker_orphaned_events", "Feedback and evaluations whose interaction is unknown or expired")
WINDOW_LAG = Gauge("aipulse_worker_window_lag_seconds", "Now minus the end of the newest closed window")
TABLE_ROWS = Gauge("aipulse_table_rows", "Rows per ClickHouse table (sampled)", ["table"])

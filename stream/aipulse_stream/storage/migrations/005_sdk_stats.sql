-- The SDK's delivery ledger (collectors/aipulse/contract.py SdkStats): every SDK instance
-- reports its cumulative counters every ledger_interval_s and once at close. The loss before
-- Kafka of one instance is sum(dropped) of its newest row; per service, the sum over
-- instances of their newest rows:
--   SELECT service, instance_id, argMax(emitted, ts) AS emitted, argMax(sent, ts) AS sent,
--          argMax(queued, ts) AS queued, argMax(dropped, ts) AS dropped
--   FROM aipulse.sdk_stats FINAL GROUP BY service, instance_id
-- Stored like the other raw tables (same _topic/_partition/_offset bookkeeping, so replays
-- skip what is stored); ReplacingMergeTree on a key ending in event_id keeps a re-delivered
-- message once.
CREATE TABLE IF NOT EXISTS {db}.sdk_stats
(
    event_id String,
    schema_version LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    instance_id String,
    pid UInt32,
    sdk_version LowCardinality(String),
    interval_s Float64,
    final Bool,
    emitted UInt64,
    sent UInt64,
    queued UInt64,
    dropped Map(String, UInt64),
    _topic LowCardinality(String) DEFAULT '',
    _partition UInt32,
    _offset UInt64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service, instance_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {raw_ttl_days} DAY;

-- Raw events, one table per kind. Column names are the event field names of the contract
-- (collectors/aipulse/contract.py), plus where the event came from in Kafka (_partition,
-- _offset: replays and the feedback join use them) and when it was stored.
-- ReplacingMergeTree on a key that ends in event_id: the same event delivered twice is kept
-- once (read with FINAL for exact counts before background merges run).
CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.interactions
(
    event_id String,
    interaction_id String,
    schema_version LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    feature LowCardinality(String),
    model LowCardinality(String),
    provider LowCardinality(String),
    model_version LowCardinality(String),
    prompt_version LowCardinality(String),
    variant LowCardinality(String),
    rollout_stage Nullable(Float32),
    user_id String,
    session_id String,
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    input_tokens UInt64,
    output_tokens UInt64,
    cost_usd Nullable(Float64),
    cost_source LowCardinality(String),
    outcome LowCardinality(String),
    fallback_depth UInt8,
    fallback_reason LowCardinality(String),
    error_type LowCardinality(String),
    confidence Nullable(Float32),
    shadow Bool,
    shadow_of String,
    cached Bool,
    attributes Map(String, String),
    prompt Nullable(String),
    response Nullable(String),
    _partition UInt32,
    _offset UInt64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_interaction_id interaction_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (service, feature, model, ts, event_id)
TTL toDateTime(ts) + INTERVAL {raw_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.feedback
(
    event_id String,
    interaction_id String,
    schema_version LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    feedback_type LowCardinality(String),
    score Nullable(Float64),
    user_id String,
    correction Nullable(String),
    comment Nullable(String),
    _partition UInt32,
    _offset UInt64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_interaction_id interaction_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (service, feedback_type, ts, event_id)
TTL toDateTime(ts) + INTERVAL {raw_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.evaluations
(
    event_id String,
    interaction_id String,
    schema_version LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    service LowCardinality(String),
    source LowCardinality(String),
    correct Nullable(Bool),
    score Nullable(Float64),
    evaluator LowCardinality(String),
    label LowCardinality(String),
    _partition UInt32,
    _offset UInt64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_interaction_id interaction_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (service, source, ts, event_id)
TTL toDateTime(ts) + INTERVAL {raw_ttl_days} DAY;

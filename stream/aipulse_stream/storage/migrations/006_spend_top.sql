-- Top spenders per window and feature (transforms/spend_top.py; read by readside/spend_top.py;
-- described in docs/metrics.md, "Top spenders").
--
-- One row = the contribution of ONE offset block of ONE Kafka partition to one window,
-- service and feature: its top_k biggest spenders exactly (parallel arrays, biggest first),
-- the other identified users as a remainder, and other_max_usd, the most any user not kept
-- spent, and other_hashes, the CRC32 of every user not kept: a merged per-user sum is short
-- by at most the other_max_usd of the rows whose other_hashes hold the user's CRC32
-- (0 when it was never cut: then it is exact). The same identity and version
-- as metrics_window rows: a replay re-inserts a row with the same or a higher version and
-- ReplacingMergeTree keeps one. Readers MUST use FINAL, then sum over partitions/blocks:
--   SELECT u AS user_id, sum(c) AS cost_usd
--   FROM aipulse.spend_top_window FINAL ARRAY JOIN top_users AS u, top_usd AS c
--   WHERE window_start >= now() - INTERVAL 1 HOUR GROUP BY u ORDER BY cost_usd DESC LIMIT 10
CREATE TABLE IF NOT EXISTS {db}.spend_top_window
(
    service LowCardinality(String),
    feature LowCardinality(String),
    window_start DateTime('UTC'),
    topic LowCardinality(String),
    partition UInt32,
    block UInt64,
    version UInt64,
    window_s UInt32,
    top_k UInt16,
    top_users Array(String),
    top_usd Array(Float64),
    top_requests Array(UInt64),
    other_usd Float64,
    other_users UInt64,
    other_max_usd Float64,
    other_hashes Array(UInt32),
    anonymous_usd Float64,
    total_usd Float64,
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (service, feature, window_start, topic, partition, block)
TTL window_start + INTERVAL {metrics_ttl_days} DAY;

-- Alert state changes from the streaming detector (alerts/aipulse_alerts/notify.py), one row
-- per firing and per resolved notification; dashboards show them as annotations:
--   SELECT at AS time, status, rule, summary AS text FROM aipulse.alerts
--   WHERE at BETWEEN $__fromTime AND $__toTime
-- `alert_id` is stable for one alert (rule + group + start), so the firing and the resolved
-- row of one alert share it; a re-sent row replaces its twin (ReplacingMergeTree(at)).
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id String,
    rule LowCardinality(String),
    status LowCardinality(String),
    severity LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    model LowCardinality(String),
    variant LowCardinality(String),
    group_key String,
    labels Map(String, String),
    summary String,
    runbook String,
    value Float64,
    threshold Nullable(Float64),
    baseline Nullable(Float64),
    starts_at DateTime64(3, 'UTC'),
    ends_at Nullable(DateTime64(3, 'UTC')),
    at DateTime64(3, 'UTC'),
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(at)
PARTITION BY toYYYYMM(starts_at)
ORDER BY (rule, alert_id, status)
TTL toDateTime(starts_at) + INTERVAL {metrics_ttl_days} DAY;

-- Window rows, their 1 h / 1 d rollups, partition progress and the quantile function.
-- Written by transforms/windows.py; read by readside/query.py; described in docs/metrics.md.
--
-- One row = the contribution of ONE offset block of ONE Kafka partition to one tumbling
-- window and key. `version` is the highest offset counted in it: a replay after a crash
-- re-inserts the same rows with the same or a higher version and ReplacingMergeTree keeps
-- one. Readers MUST use FINAL (or argMax by version) and then sum over partitions/blocks.
CREATE TABLE IF NOT EXISTS {db}.metrics_window
(
    service LowCardinality(String),
    feature LowCardinality(String),
    model LowCardinality(String),
    variant LowCardinality(String),
    window_start DateTime('UTC'),
    topic LowCardinality(String),
    partition UInt32,
    block UInt64,
    version UInt64,
    window_s UInt32,
    requests UInt64,
    errors UInt64,
    timeouts UInt64,
    fallbacks UInt64,
    fallback_depth Map(UInt8, UInt64),
    escalations UInt64,
    refused UInt64,
    rejected_input UInt64,
    rejected_output UInt64,
    low_confidence UInt64,
    cached UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cost_usd Float64,
    cost_missing UInt64,
    latency_sum_ms Float64,
    latency_buckets Map(Int32, UInt64),
    ttft_count UInt64,
    ttft_sum_ms Float64,
    ttft_buckets Map(Int32, UInt64),
    users Array(UInt64),
    shadow_requests UInt64,
    shadow_pairs UInt64,
    shadow_disagreements UInt64,
    feedback_up UInt64,
    feedback_down UInt64,
    task_completed UInt64,
    task_failed UInt64,
    corrections UInt64,
    escalations_resolved UInt64,
    evaluated UInt64,
    correct UInt64,
    eval_scored UInt64,
    eval_score_sum Float64,
    late UInt64,
    orphaned UInt64,
    rollout_stage Nullable(Float32),
    max_ts DateTime64(3, 'UTC'),
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (service, feature, model, variant, window_start, topic, partition, block)
TTL window_start + INTERVAL {metrics_ttl_days} DAY;

-- Where each partition's processing stands, per offset block: the watermark at the block's
-- last counted offset is what a restart at the next block starts from (deterministic
-- lateness), and the worker's self-metrics read events/late from here.
CREATE TABLE IF NOT EXISTS {db}.partition_progress
(
    topic LowCardinality(String),
    partition UInt32,
    block UInt64,
    version UInt64,
    watermark_ms Int64,
    events UInt64,
    late UInt64,
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (topic, partition, block)
TTL toDateTime(written_at) + INTERVAL {metrics_ttl_days} DAY;

-- Rollups. Same columns; window_start is the start of the hour / day, window_s its length.
-- Exactness: each INSERT into metrics_window carries the full state of every row of each
-- offset block it touches (windows.py drain_rows), so grouping one inserted batch by
-- (grain, key, topic, partition, block) yields that group's full state, with version =
-- max(version) of its rows; a later insert of the same group has a version >= and a
-- superset of the events, so ReplacingMergeTree(version) keeps the right one.
CREATE TABLE IF NOT EXISTS {db}.metrics_hourly AS {db}.metrics_window
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (service, feature, model, variant, window_start, topic, partition, block)
TTL window_start + INTERVAL {metrics_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.metrics_daily AS {db}.metrics_window
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(window_start)
ORDER BY (service, feature, model, variant, window_start, topic, partition, block)
TTL window_start + INTERVAL {metrics_ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.metrics_hourly_mv TO {db}.metrics_hourly AS
SELECT
    service, feature, model, variant, grain_start AS window_start, topic, partition, block,
    max(version) AS version, toUInt32(3600) AS window_s,
    sum(requests) AS requests, sum(errors) AS errors, sum(timeouts) AS timeouts,
    sum(fallbacks) AS fallbacks, sumMap(fallback_depth) AS fallback_depth,
    sum(escalations) AS escalations, sum(refused) AS refused,
    sum(rejected_input) AS rejected_input, sum(rejected_output) AS rejected_output,
    sum(low_confidence) AS low_confidence, sum(cached) AS cached,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd, sum(cost_missing) AS cost_missing,
    sum(latency_sum_ms) AS latency_sum_ms, sumMap(latency_buckets) AS latency_buckets,
    sum(ttft_count) AS ttft_count, sum(ttft_sum_ms) AS ttft_sum_ms,
    sumMap(ttft_buckets) AS ttft_buckets,
    arraySort(groupUniqArrayArray(users)) AS users,
    sum(shadow_requests) AS shadow_requests, sum(shadow_pairs) AS shadow_pairs,
    sum(shadow_disagreements) AS shadow_disagreements,
    sum(feedback_up) AS feedback_up, sum(feedback_down) AS feedback_down,
    sum(task_completed) AS task_completed, sum(task_failed) AS task_failed,
    sum(corrections) AS corrections, sum(escalations_resolved) AS escalations_resolved,
    sum(evaluated) AS evaluated, sum(correct) AS correct,
    sum(eval_scored) AS eval_scored, sum(eval_score_sum) AS eval_score_sum,
    sum(late) AS late, sum(orphaned) AS orphaned,
    max(rollout_stage) AS rollout_stage, max(max_ts) AS max_ts
FROM (SELECT *, toStartOfHour(window_start) AS grain_start FROM {db}.metrics_window)
GROUP BY service, feature, model, variant, grain_start, topic, partition, block;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.metrics_daily_mv TO {db}.metrics_daily AS
SELECT
    service, feature, model, variant, grain_start AS window_start, topic, partition, block,
    max(version) AS version, toUInt32(86400) AS window_s,
    sum(requests) AS requests, sum(errors) AS errors, sum(timeouts) AS timeouts,
    sum(fallbacks) AS fallbacks, sumMap(fallback_depth) AS fallback_depth,
    sum(escalations) AS escalations, sum(refused) AS refused,
    sum(rejected_input) AS rejected_input, sum(rejected_output) AS rejected_output,
    sum(low_confidence) AS low_confidence, sum(cached) AS cached,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd, sum(cost_missing) AS cost_missing,
    sum(latency_sum_ms) AS latency_sum_ms, sumMap(latency_buckets) AS latency_buckets,
    sum(ttft_count) AS ttft_count, sum(ttft_sum_ms) AS ttft_sum_ms,
    sumMap(ttft_buckets) AS ttft_buckets,
    arraySort(groupUniqArrayArray(users)) AS users,
    sum(shadow_requests) AS shadow_requests, sum(shadow_pairs) AS shadow_pairs,
    sum(shadow_disagreements) AS shadow_disagreements,
    sum(feedback_up) AS feedback_up, sum(feedback_down) AS feedback_down,
    sum(task_completed) AS task_completed, sum(task_failed) AS task_failed,
    sum(corrections) AS corrections, sum(escalations_resolved) AS escalations_resolved,
    sum(evaluated) AS evaluated, sum(correct) AS correct,
    sum(eval_scored) AS eval_scored, sum(eval_score_sum) AS eval_score_sum,
    sum(late) AS late, sum(orphaned) AS orphaned,
    max(rollout_stage) AS rollout_stage, max(max_ts) AS max_ts
FROM (SELECT *, toStartOfDay(window_start) AS grain_start FROM {db}.metrics_window)
GROUP BY service, feature, model, variant, grain_start, topic, partition, block;

-- The value a sketch bucket reads back as (transforms/sketch.py `value`): alpha = 0.01,
-- gamma = (1 + alpha) / (1 - alpha); the Int32-min key holds values below 0.01 ms (read 0).
CREATE FUNCTION IF NOT EXISTS aipulse_sketch_value AS (k) ->
    if(k = -2147483648, 0., 2. * pow((1 + 0.01) / (1 - 0.01), k) / ((1 + 0.01) / (1 - 0.01) + 1));

-- Lower quantile over sorted keys and their cumulative counts: the first key whose
-- cumulative count exceeds floor(q * (n - 1)) (sketch.py `rank_index`). NaN when empty.
CREATE FUNCTION IF NOT EXISTS aipulse_quantile_sorted AS (q, sorted_keys, cum_counts) ->
    if(empty(cum_counts), nan,
       aipulse_sketch_value(sorted_keys[arrayFirstIndex(
           c -> c > floor(q * (toFloat64(cum_counts[-1]) - 1)), cum_counts)]));

-- aipulse_quantile(q, buckets): the q-quantile (ms) of a merged sketch, e.g.
--   SELECT aipulse_quantile(0.99, sumMap(latency_buckets)) FROM metrics_window FINAL WHERE ...
-- Within 1% of the exact lower q-quantile of the raw values, for any set of rows.
CREATE FUNCTION IF NOT EXISTS aipulse_quantile AS (q, buckets) ->
    aipulse_quantile_sorted(q, arraySort(mapKeys(buckets)),
        arrayCumSum(arraySort((c, k) -> k, mapValues(buckets), mapKeys(buckets))));

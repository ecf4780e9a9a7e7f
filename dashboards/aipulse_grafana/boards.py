"""The seven dashboards. Each panel's description is the question it answers.

    from aipulse_grafana.boards import all_boards
    for board in all_boards(db="aipulse"):
        json_dict = board.build()

Ceilings drawn on panels come from the alert rule file (alerts/aipulse_alerts/rules.yaml), so a panel's
red line and the alert that pages agree.
"""
from __future__ import annotations

from aipulse_stream.readside.ledger import COLUMNS as LEDGER_COLUMNS
from aipulse_stream.readside.ledger import ledger_sql
from aipulse_stream.readside.spend_top import COLUMNS as SPEND_COLUMNS
from aipulse_stream.readside.spend_top import DIMENSIONS as SPEND_DIMENSIONS
from aipulse_stream.readside.spend_top import spend_sql

from .panels import Board
from .sqlparts import metric_sql, raw_filter, source, var_filter
from .targets import Targets

PCT = "percentunit"


def overview(db: str, t: Targets) -> Board:
    b = Board("aipulse-overview", "aipulse / Overview", db, "Is every AI feature healthy, fast, affordable and liked?")
    b.stat("Requests", "How many AI calls did users make in this range?", metric_sql(["requests"], db), ["requests"])
    b.stat("Availability", f"Is availability (1 - error rate) above its {t.slo_target:.1%} target?",
           metric_sql(["availability"], db), ["availability"], unit=PCT, decimals=3,
           thresholds=[(None, "red"), (t.slo_target, "green")])
    b.stat("P95 latency", "Is P95 latency under its ceiling?", metric_sql(["latency_p95_ms"], db), ["latency_p95_ms"], unit="ms",
           thresholds=[(None, "green"), (t.p95_ceiling_ms, "red")])
    b.stat("P99 latency", "Is P99 latency under its ceiling?", metric_sql(["latency_p99_ms"], db), ["latency_p99_ms"], unit="ms",
           thresholds=[(None, "green"), (t.p99_ceiling_ms, "red")])
    b.stat("Cost today", "How much has been spent since midnight UTC (of the range's end)?",
           f"SELECT sum(cost_usd) AS cost_usd\nFROM {db}.metrics_window FINAL\n"
           f"WHERE window_start >= toStartOfDay($__toTime) AND window_start <= $__toTime AND {var_filter()}",
           ["cost_usd"], unit="currencyUSD", decimals=2)
    b.stat("Monthly run-rate", f"At this range's pace, will a month cost more than the {t.cost_ceiling_usd_month:,.0f} USD ceiling?",
           metric_sql(["cost_run_rate_usd_month"], db),
           ["cost_run_rate_usd_month"], unit="currencyUSD", decimals=0,
           thresholds=[(None, "green"), (t.cost_ceiling_usd_month, "red")])
    b.timeseries("Traffic by feature", "Which features carry the traffic, and did any stop?",
                 metric_sql(["requests_per_s"], db, by="feature", series=True), ["time", "feature", "requests_per_s"],
                 unit="reqps")
    b.timeseries("P95 / P99 latency", "Are P95 and P99 under their ceilings over time?",
                 metric_sql(["latency_p95_ms", "latency_p99_ms"], db, series=True), ["time", "latency_p95_ms", "latency_p99_ms"], unit="ms",
                 thresholds=[(None, "green"), (t.p99_ceiling_ms, "red")])
    b.timeseries("Availability", "When did availability dip under target?",
                 metric_sql(["availability"], db, series=True), ["time", "availability"], unit=PCT,
                 thresholds=[(None, "red"), (t.slo_target, "green")])
    b.timeseries("Fallback and escalation rates", "Are we leaning on fallbacks or humans more than usual?",
                 metric_sql(["fallback_rate", "escalation_rate"], db, series=True),
                 ["time", "fallback_rate", "escalation_rate"], unit=PCT)
    b.timeseries("Satisfaction", "Do users like the answers (thumbs up share)?",
                 metric_sql(["satisfaction"], db, series=True), ["time", "satisfaction"], unit=PCT)
    b.stat("Satisfaction", "What share of feedback in this range was a thumbs up?",
           metric_sql(["satisfaction"], db), ["satisfaction"], unit=PCT, w=12, h=8)
    b.firing_alerts("Firing alerts", "Which aipulse alerts are firing now (Alertmanager)?")
    return b


def latency(db: str, t: Targets) -> Board:
    b = Board("aipulse-latency", "aipulse / Latency", db, "Latency from merged sketches (1% accurate at any grouping).")
    for q in ("p50", "p95", "p99"):
        b.timeseries(f"{q.upper()} by feature", f"Which feature's {q.upper()} latency is moving?",
                     metric_sql([f"latency_{q}_ms"], db, by="feature", series=True), ["time", "feature", f"latency_{q}_ms"], unit="ms",
                     w=8, thresholds=[(None, "green"), (t.p99_ceiling_ms if q == "p99" else t.p95_ceiling_ms, "red")]
                     if q != "p50" else None)
    b.timeseries("P99 by model", "Is one model (provider) the slow one?",
                 metric_sql(["latency_p99_ms"], db, by="model", series=True), ["time", "model", "latency_p99_ms"], unit="ms")
    b.timeseries("Time to first token P50 / P95", "How long until streaming answers start?",
                 metric_sql(["ttft_p50_ms", "ttft_p95_ms"], db, series=True), ["time", "ttft_p50_ms", "ttft_p95_ms"],
                 unit="ms")
    b.table("Latency by feature and model", "Which feature/model pair is slowest over the range?",
            metric_sql(["requests", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms", "latency_mean_ms"], db,
                       by="feature, model"),
            ["feature", "model", "requests", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms",
             "latency_mean_ms"],
            units={c: "ms" for c in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms", "latency_mean_ms")})
    b.bars("Latency distribution", "What does the whole latency distribution look like (10% wide buckets)?",
           f"SELECT toString(round(aipulse_sketch_value(toInt32(floor(k / 5) * 5 + 4)))) AS upper_ms, sum(c) AS requests\n"
           f"FROM (SELECT sumMap(latency_buckets) AS b FROM {source(db, False)})\n"
           f"ARRAY JOIN mapKeys(b) AS k, mapValues(b) AS c\nWHERE k > -2147483648\n"
           f"GROUP BY floor(k / 5) AS g, upper_ms ORDER BY g", ["upper_ms", "requests"], w=24)
    return b


def reliability(db: str, t: Targets) -> Board:
    b = Board("aipulse-reliability", "aipulse / Reliability", db, "Errors, fallbacks, escalations, rejections, confidence.")
    b.timeseries("Error rate by feature", "Which feature fails (errors and timeouts)?",
                 metric_sql(["error_rate"], db, by="feature", series=True), ["time", "feature", "error_rate"], unit=PCT)
    b.timeseries("Fallbacks by depth", "How deep into the fallback chain do requests go?",
                 f"SELECT time, toString(depth) AS depth, sum(n) AS fallbacks\nFROM (\n"
                 f"  SELECT $__timeInterval(window_start) AS time, sumMap(fallback_depth) AS m\n"
                 f"  FROM {source(db, True)}\n  GROUP BY time\n)\nARRAY JOIN mapKeys(m) AS depth, mapValues(m) AS n\n"
                 f"GROUP BY time, depth\nORDER BY time", ["time", "depth", "fallbacks"])
    b.timeseries("Escalation rate", "How often is a human pulled in?",
                 metric_sql(["escalation_rate"], db, by="feature", series=True), ["time", "feature", "escalation_rate"],
                 unit=PCT)
    b.timeseries("Rejected input / output", "Are guardrails rejecting more prompts or answers?",
                 metric_sql(["rejected_input_rate", "rejected_output_rate", "refusal_rate"], db, series=True),
                 ["time", "rejected_input_rate", "rejected_output_rate", "refusal_rate"], unit=PCT)
    b.timeseries("Low-confidence rate", "Is the model less sure of itself than usual?",
                 metric_sql(["low_confidence_rate"], db, by="model", series=True),
                 ["time", "model", "low_confidence_rate"], unit=PCT)
    b.prom("Circuit breaker state changes", "When did a circuit breaker open or close (SDK)?",
           [("sum by (circuit, to) (increase(aipulse_sdk_circuit_transitions_total[$__rate_interval]))",
             "{{circuit}} -> {{to}}")])
    b.table("Reliability by feature and model", "Which feature/model pair is least reliable over the range?",
            metric_sql(["requests", "error_rate", "timeout_rate", "fallback_rate", "escalation_rate",
                        "rejected_input_rate", "rejected_output_rate", "low_confidence_rate"], db, by="feature, model"),
            ["feature", "model", "requests", "error_rate", "timeout_rate", "fallback_rate", "escalation_rate",
             "rejected_input_rate", "rejected_output_rate", "low_confidence_rate"],
            units={c: PCT for c in ("error_rate", "timeout_rate", "fallback_rate", "escalation_rate",
                                    "rejected_input_rate", "rejected_output_rate", "low_confidence_rate")})
    return b


def cost(db: str, t: Targets) -> Board:
    b = Board("aipulse-cost", "aipulse / Cost", db, "Where the money goes, and whether the month fits the ceiling.",
              time_from="now-7d")
    b.timeseries("Cost by feature", "Which feature spends the money?",
                 metric_sql(["cost_usd"], db, by="feature", series=True), ["time", "feature", "cost_usd"],
                 unit="currencyUSD")
    b.timeseries("Cost by model", "Which model spends the money?",
                 metric_sql(["cost_usd"], db, by="model", series=True), ["time", "model", "cost_usd"], unit="currencyUSD")
    b.timeseries("Tokens", "How many input and output tokens do we send and receive?",
                 metric_sql(["input_tokens", "output_tokens"], db, series=True),
                 ["time", "input_tokens", "output_tokens"])
    b.stat("Cost per successful task", "What does one completed task cost?",
           metric_sql(["cost_per_task_usd"], db), ["cost_per_task_usd"], unit="currencyUSD", decimals=4, w=6)
    b.stat("Cost in range", "How much did this range cost?", metric_sql(["cost_usd"], db), ["cost_usd"],
           unit="currencyUSD", decimals=2, w=6)
    b.stat("Projected month", f"At this range's pace, does a month stay under {t.cost_ceiling_usd_month:,.0f} USD?",
           metric_sql(["cost_run_rate_usd_month"], db),
           ["cost_run_rate_usd_month"], unit="currencyUSD", decimals=0, w=6,
           thresholds=[(None, "green"), (0.8 * t.cost_ceiling_usd_month, "orange"), (t.cost_ceiling_usd_month, "red")])
    b.stat("Distinct users", "How many distinct users called AI features?", metric_sql(["users"], db), ["users"], w=6)
    b.table("Top users by spend",
            "Which users (hashed ids) cost the most? Merged top spenders (spend_top_window); "
            "max_missing_usd > 0: the figure may be short by at most that much (service and feature filters apply).",
            spend_sql(db, f"window_start >= $__fromTime AND window_start <= $__toTime AND "
                          f"{var_filter(SPEND_DIMENSIONS)}", limit=20),
            list(SPEND_COLUMNS), w=12,
            units={"cost_usd": "currencyUSD", "max_missing_usd": "currencyUSD", "share": PCT, "spend_usd": "currencyUSD"})
    b.table("Cost by feature and model", "What does each feature/model pair cost per request and per task?",
            metric_sql(["requests", "cost_usd", "cost_per_request_usd", "cost_per_task_usd", "input_tokens",
                        "output_tokens"], db, by="feature, model", order="cost_usd DESC"),
            ["feature", "model", "requests", "cost_usd", "cost_per_request_usd", "cost_per_task_usd", "input_tokens",
             "output_tokens"], w=12,
            units={"cost_usd": "currencyUSD", "cost_per_request_usd": "currencyUSD", "cost_per_task_usd": "currencyUSD"})
    # Cost is never silently under-reported: calls with tokens but no known price are counted.
    b.stat("Unpriced interactions", "How many calls had tokens but no known price (their cost is missing above)?",
           metric_sql(["unpriced_requests"], db), ["unpriced_requests"], w=6, h=8,
           thresholds=[(None, "green"), (1, "orange")])
    b.table("Unpriced by model", "Which models lack a price (add them to the SDK's price_overrides)?",
            f"SELECT * FROM (\n{metric_sql(['unpriced_requests', 'unpriced_rate', 'requests'], db, by='model')}\n)\n"
            "WHERE unpriced_requests > 0\nORDER BY unpriced_requests DESC, model",
            ["model", "unpriced_requests", "unpriced_rate", "requests"], w=18, units={"unpriced_rate": PCT})
    return b


def quality(db: str, t: Targets) -> Board:
    b = Board("aipulse-quality", "aipulse / Quality", db, "What users and evaluators think of the answers.",
              time_from="now-7d")
    b.timeseries("Satisfaction by feature", "Do users like the answers, per feature?",
                 metric_sql(["satisfaction"], db, by="feature", series=True), ["time", "feature", "satisfaction"],
                 unit=PCT)
    b.timeseries("Task completion", "Do users finish what they started?",
                 metric_sql(["task_completion_rate"], db, by="feature", series=True),
                 ["time", "feature", "task_completion_rate"], unit=PCT)
    b.timeseries("Human corrections", "How often does a human correct an answer (per request)?",
                 metric_sql(["correction_rate"], db, by="feature", series=True), ["time", "feature", "correction_rate"],
                 unit=PCT)
    b.timeseries("Accuracy by model", "Is each model right against ground truth?",
                 metric_sql(["accuracy"], db, by="model", series=True), ["time", "model", "accuracy"], unit=PCT)
    b.table("Accuracy by model and prompt version", "Which model and prompt version are most accurate (raw events)?",
            f"SELECT i.i_model AS model, i.i_prompt_version AS prompt_version, count() AS evaluated,\n"
            f"  countIf(e.correct) AS correct, countIf(e.correct) / count() AS accuracy\n"
            f"FROM {db}.evaluations AS e FINAL\n"
            f"INNER JOIN (\n  SELECT interaction_id, any(model) AS i_model, any(prompt_version) AS i_prompt_version\n"
            f"  FROM {db}.interactions FINAL\n"
            f"  WHERE ts >= $__fromTime - INTERVAL 7 DAY AND ts <= $__toTime AND NOT shadow AND {var_filter()}\n"
            f"  GROUP BY interaction_id\n) AS i ON e.interaction_id = i.interaction_id\n"
            f"WHERE $__timeFilter(e.ts) AND e.source != 'shadow' AND e.correct IS NOT NULL\n"
            f"GROUP BY model, prompt_version\nORDER BY model, prompt_version",
            ["model", "prompt_version", "evaluated", "correct", "accuracy"], w=12, units={"accuracy": PCT})
    b.timeseries("Feedback volume", "Is enough feedback coming in to trust the rates?",
                 metric_sql(["feedback_volume", "evaluated"], db, series=True), ["time", "feedback_volume", "evaluated"])
    return b


def rollout(db: str, t: Targets) -> Board:
    b = Board("aipulse-rollout", "aipulse / Rollout and shadow", db,
              "Each variant beside the baseline: promote, hold or roll back?")
    figs = ["requests", "error_rate", "fallback_rate", "escalation_rate", "latency_p95_ms", "latency_p99_ms", "cost_per_request_usd",
            "satisfaction", "task_completion_rate", "accuracy", "shadow_disagreement_rate"]
    deltas = ", ".join(f"{f} - anyIf({f}, variant = '{t.baseline_variant}') OVER () AS {f}_delta" for f in figs[1:])
    b.table(f"Variants against {t.baseline_variant}",
            f"Is each variant better or worse than the {t.baseline_variant} baseline, metric by metric?",
            f"SELECT *, {deltas}\nFROM (\n{metric_sql(figs, db, by='variant')}\n)\nORDER BY variant",
            ["variant", *figs, *(f"{f}_delta" for f in figs[1:])], h=9)
    for fig, unit, q in (("error_rate", PCT, "Does the canary fail more than the baseline?"),
                         ("latency_p95_ms", "ms", "Is the canary slower than the baseline?"),
                         ("fallback_rate", PCT, "Does the canary need fallbacks more often?"),
                         ("satisfaction", PCT, "Do users like the canary's answers as much?"),
                         ("accuracy", PCT, "Is the canary as accurate against ground truth?"),
                         ("cost_per_request_usd", "currencyUSD", "Is the canary cheaper or dearer per call?")):
        b.timeseries(f"{fig} by variant", q, metric_sql([fig], db, by="variant", series=True),
                     ["time", "variant", fig], unit=unit, w=8)
    b.timeseries("Shadow disagreement", "How often does the shadow candidate disagree with production?",
                 metric_sql(["shadow_disagreement_rate"], db, by="model", series=True),
                 ["time", "model", "shadow_disagreement_rate"], unit=PCT)
    b.timeseries("Rollout stage", "What share of traffic was each variant's rollout at, over time?",
                 metric_sql(["rollout_stage"], db, by="variant", series=True), ["time", "variant", "rollout_stage"],
                 unit="percent")
    return b


def pipeline(db: str, t: Targets) -> Board:
    b = Board("aipulse-pipeline", "aipulse / Pipeline health", db, "Is aipulse itself keeping up (Prometheus)?",
              time_from="now-3h")
    b.prom("Consumer lag (offsets)", "How far behind the newest events are the workers, per partition? Unread: "
           "not fetched yet (should drain to 0). Uncommitted: not yet committed; offsets are committed a whole "
           "block at a time, so up to one block (AIPULSE_OFFSET_BLOCK) per partition stays here while the "
           "stream pauses: read and stored, replayed only if the worker restarts.",
           [("max by (partition) (aipulse_worker_unread_offsets)", "unread p{{partition}}"),
            ("max by (partition) (aipulse_worker_consumer_lag)", "uncommitted p{{partition}}")])
    b.prom("Events in / out", "Do the workers store what they consume?",
           [("sum(rate(aipulse_worker_consumed_total[$__rate_interval]))", "consumed/s"),
            ("sum by (kind) (rate(aipulse_worker_stored_total[$__rate_interval]))", "stored {{kind}}/s")], unit="ops")
    b.prom("Dead letters", "Are invalid events arriving, and why?",
           [("sum by (reason) (increase(aipulse_worker_dead_lettered_total[$__rate_interval]))", "{{reason}}")])
    b.prom("Insert latency P99", "Is ClickHouse slow to accept inserts?",
           [("histogram_quantile(0.99, sum by (le, table) (rate(aipulse_worker_insert_seconds_bucket[$__rate_interval])))",
             "{{table}}")], unit="s")
    b.prom("Window lag", "How old is the newest closed window (dashboard freshness)?",
           [("max(aipulse_worker_window_lag_seconds)", "window lag")], unit="s")
    b.prom("SDK drops", "Are applications dropping events before Kafka, and why?",
           [("sum by (reason) (rate(aipulse_sdk_events_dropped_total[$__rate_interval]))", "{{reason}}")], unit="ops")
    b.table("Events lost before Kafka (SDK ledger)",
            "Which application instances lost events before they reached Kafka, how many, and why?",
            ledger_sql(db, f"$__timeFilter(ts) AND {var_filter(('service',))}"),
            list(LEDGER_COLUMNS), w=24)
    b.prom("Late and orphaned events", "Are events arriving too late or without their interaction?",
           [("sum(rate(aipulse_worker_late_events_total[$__rate_interval]))", "late/s"),
            ("sum(rate(aipulse_worker_orphaned_events_total[$__rate_interval]))", "orphaned/s")], unit="ops")
    b.prom("Insert failures", "Are ClickHouse inserts failing (and being retried)?",
           [("sum by (table) (increase(aipulse_worker_insert_failures_total[$__rate_interval]))", "{{table}}")])
    return b


BOARDS = (overview, latency, reliability, cost, quality, rollout, pipeline)


def all_boards(db: str = "aipulse", targets: Targets | None = None) -> list[Board]:
    t = targets or Targets.from_rules()
    return [f(db, t) for f in BOARDS]

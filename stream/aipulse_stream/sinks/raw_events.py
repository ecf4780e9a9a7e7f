"""Raw events to their ClickHouse tables (interactions, feedback, evaluations, and the SDK's
delivery ledger ``sdk_stats``), in batches.

Column names are the event field names (see storage/migrations/001_raw_events.sql), plus
the Kafka partition and offset the event came from.
"""
from __future__ import annotations

import json
from typing import Iterable

from aipulse.contract import Evaluation, Feedback, Interaction, SdkStats

INTERACTION_COLUMNS = (
    "event_id", "interaction_id", "schema_version", "ts", "service", "feature", "model", "provider",
    "model_version", "prompt_version", "variant", "rollout_stage", "user_id", "session_id", "latency_ms",
    "ttft_ms", "input_tokens", "output_tokens", "cost_usd", "cost_source", "outcome", "fallback_depth",
    "fallback_reason", "error_type", "confidence", "shadow", "shadow_of", "cached", "attributes",
    "prompt", "response",
)
FEEDBACK_COLUMNS = (
    "event_id", "interaction_id", "schema_version", "ts", "service", "feedback_type", "score", "user_id",
    "correction", "comment",
)
EVALUATION_COLUMNS = (
    "event_id", "interaction_id", "schema_version", "ts", "service", "source", "correct", "score",
    "evaluator", "label",
)
SDK_STATS_COLUMNS = (
    "event_id", "schema_version", "ts", "service", "instance_id", "pid", "sdk_version", "interval_s", "final",
    "emitted", "sent", "queued", "dropped",
)
TABLES = {
    "interaction": ("interactions", INTERACTION_COLUMNS),
    "feedback": ("feedback", FEEDBACK_COLUMNS),
    "evaluation": ("evaluations", EVALUATION_COLUMNS),
    "sdk_stats": ("sdk_stats", SDK_STATS_COLUMNS),   # storage/migrations/005_sdk_stats.sql
}
# The kinds the windows aggregate: the ledger is stored, never counted as traffic.
APP_KINDS = ("interaction", "feedback", "evaluation")
SOURCE_COLUMNS = ("_topic", "_partition", "_offset")


def _attr_text(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def rows_by_table(items: Iterable[tuple[int, int, Interaction | Feedback | Evaluation | SdkStats]],
                  topic: str) -> dict[str, list[list]]:
    """Group (partition, offset, event) of `topic` into row lists per table, columns in TABLES order."""
    out: dict[str, list[list]] = {}
    for partition, offset, ev in items:
        table, columns = TABLES[ev.kind]
        row = [getattr(ev, c) for c in columns]
        if ev.kind == "interaction":
            i = INTERACTION_COLUMNS.index("attributes")
            row[i] = {k: _attr_text(v) for k, v in ev.attributes.items()}
        row.append(topic)
        row.append(partition)
        row.append(offset)
        out.setdefault(table, []).append(row)
    return out


def column_names(table: str) -> list[str]:
    for t, cols in TABLES.values():
        if t == table:
            return list(cols) + list(SOURCE_COLUMNS)
    raise KeyError(table)

"""The SDK against the real Kafka broker: wire format, counts, flush and close."""
from __future__ import annotations

import json
import time

import pytest

import aipulse
from aipulse.contract import Evaluation, Feedback, Interaction, parse_event

from .conftest import consume

pytestmark = pytest.mark.integration


def test_events_reach_kafka_keyed_timestamped_and_valid(sdk, sdk_kafka, topic):
    with aipulse.interaction(feature="chat", model="gpt-4o", provider="openai", user_id="alice") as call:
        call.update(input_tokens=120, output_tokens=30)
    aipulse.feedback(call.id, "thumbs_up")
    aipulse.evaluate(call.id, correct=True, source="ground_truth")
    assert aipulse.flush(10)
    records = consume(sdk_kafka, topic, 3)
    assert len(records) == 3
    events = [parse_event(r.value) for r in records]
    assert [type(e) for e in events] == [Interaction, Feedback, Evaluation]
    assert all(r.key == call.id.encode() for r in records)
    inter = events[0]
    assert abs(records[0].timestamp - inter.ts.timestamp() * 1000) < 1
    assert inter.cost_source == "genai-prices" and inter.cost_usd > 0
    assert inter.user_id != "alice" and len(inter.user_id) == 32
    assert json.loads(records[0].value)["kind"] == "interaction"
    st = aipulse.stats()
    assert st["emitted"] == st["sent"] == 3 and st["queued"] == 0 and not any(st["dropped"].values())


def test_counts_add_up_and_invalid_events_are_counted(sdk, sdk_kafka, topic):
    for i in range(500):
        with aipulse.interaction(feature="batch", model="gpt-4o-mini") as call:
            call.update(input_tokens=i)
    aipulse.record(feature="bad", latency_ms=float("inf"))
    aipulse.evaluate("x")  # no verdict: invalid
    assert aipulse.flush(15)
    st = aipulse.stats()
    assert st["emitted"] == 502 and st["sent"] == 500 and st["dropped"]["invalid"] == 2
    assert st["emitted"] == st["sent"] + sum(st["dropped"].values()) + st["queued"]
    assert len(consume(sdk_kafka, topic, 500)) == 500


def test_close_flushes_and_later_calls_are_noops(sdk_kafka, topic):
    aipulse.init(kafka_bootstrap=sdk_kafka, topic=topic, service="sdk-test", user_salt="s")
    for _ in range(50):
        aipulse.record(feature="f", latency_ms=1.0)
    t0 = time.monotonic()
    aipulse.close(timeout=10)
    assert time.monotonic() - t0 < 10
    assert aipulse.stats()["enabled"] is False
    aipulse.record(feature="after-close", latency_ms=1.0)  # silently ignored
    aipulse.close()                                         # twice is fine
    records = consume(sdk_kafka, topic, 51)
    kinds = [json.loads(r.value)["kind"] for r in records]
    # the 50 events, then the SDK's final ledger message (docs/sdk.md, "Delivery ledger")
    assert kinds == ["interaction"] * 50 + ["sdk_stats"]


def test_flush_respects_its_deadline_when_kafka_is_absent():
    aipulse.init(kafka_bootstrap="127.0.0.1:1", topic="t", service="sdk-test", user_salt="s",
                 connect_timeout_ms=200)
    try:
        aipulse.record(feature="f", latency_ms=1.0)
        t0 = time.monotonic()
        result = aipulse.flush(0.3)
        assert not result and result.pending == 1 and result.delivered == 0
        assert time.monotonic() - t0 < 1.0
        assert aipulse.stats()["queued"] == 1
    finally:
        t0 = time.monotonic()
        aipulse.close(timeout=0.5)
        assert time.monotonic() - t0 < 3.0

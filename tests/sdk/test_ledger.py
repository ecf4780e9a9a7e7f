"""The SDK's delivery ledger (``sdk_stats`` events) and what ``flush()`` returns."""
from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

import aipulse
from aipulse.contract import InvalidEvent, SdkStats, parse_event, parse_wire

from .conftest import consume, create_topic, wait_connected

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "collectors" / "schema" / "aipulse-event-v1.json"


def ledger_of(records) -> list[dict]:
    return [json.loads(r.value) for r in records if b'"kind":"sdk_stats"' in r.value]


def test_a_ledger_event_is_a_wire_event_but_not_an_application_event():
    client = aipulse.init(kafka_bootstrap="127.0.0.1:1", service="ledger-unit", user_salt="s",
                          connect_timeout_ms=200, warn_interval_s=3600)
    try:
        aipulse.record(feature="f", latency_ms=1.0)
        aipulse.record(feature="f", latency_ms=-1.0)   # invalid
        time.sleep(0.3)
        ev = client.ledger_event()
        raw = ev.model_dump_json(exclude_none=True)
        doc = json.loads(raw)
        jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
        assert doc["kind"] == "sdk_stats" and doc["service"] == "ledger-unit"
        assert doc["instance_id"] == client.instance_id and doc["instance_id"].endswith(f"-{doc['pid']}")
        assert (doc["emitted"], doc["sent"], doc["queued"], doc["dropped"]) == (2, 0, 1, {"invalid": 1})
        assert parse_wire(raw).key == client.instance_id.encode()
        with pytest.raises(InvalidEvent, match="kind must be one of interaction, feedback, evaluation"):
            parse_event(raw)   # the application stores never see it by mistake
        with pytest.raises(InvalidEvent, match="emitted must equal"):
            parse_wire(raw.replace('"emitted":2', '"emitted":3'))
    finally:
        aipulse.close(timeout=0.3)


def test_flush_returns_what_it_delivered_and_dropped_since_the_last_flush(sdk):
    for _ in range(10):
        aipulse.record(feature="f", latency_ms=1.0)
    aipulse.record(feature="bad", latency_ms=float("inf"))
    aipulse.evaluate("x")  # no verdict: invalid
    first = aipulse.flush(15)
    assert first == aipulse.FlushResult(delivered=10, dropped={"invalid": 2}, pending=0) and first
    for _ in range(3):
        aipulse.record(feature="f", latency_ms=1.0)
    assert aipulse.flush(15) == aipulse.FlushResult(delivered=3, dropped={}, pending=0)


def test_the_ledger_is_sent_periodically_and_at_close_and_equals_stats(sdk_kafka):
    topic = create_topic(sdk_kafka)
    client = aipulse.init(kafka_bootstrap=sdk_kafka, topic=topic, service="ledger-e2e", user_salt="s",
                          ledger_interval_s=1, max_queue_events=20, warn_interval_s=3600, linger_ms=5)
    wait_connected()
    for _ in range(500):  # faster than the sender takes them from a 20-event buffer: queue_full drops
        aipulse.record(feature="f", latency_ms=1.0)
    assert aipulse.flush(15)
    aipulse.record(feature="bad", latency_ms=-1.0)
    assert aipulse.flush(15)
    time.sleep(1.3)  # one ledger interval
    aipulse.close(timeout=5)
    st = client.stats()
    assert st["dropped"]["queue_full"] > 0 and st["dropped"]["invalid"] == 1

    records = consume(sdk_kafka, topic, st["sent"] + 2, timeout=20)
    ledger = ledger_of(records)
    assert len(ledger) >= 2, "no periodic ledger message before the final one"
    *periodic, final = ledger
    assert not any(m["final"] for m in periodic) and final["final"] is True
    assert {m["instance_id"] for m in ledger} == {client.instance_id}
    assert all(m["service"] == "ledger-e2e" and m["interval_s"] == 1.0 for m in ledger)
    # the final message is the SDK's own stats() at close, exactly
    assert (final["emitted"], final["sent"], final["queued"]) == (st["emitted"], st["sent"], st["queued"])
    assert final["dropped"] == {r: n for r, n in st["dropped"].items() if n}
    # the ledger does not count itself: the application events on the topic are `sent`
    assert sum(1 for r in records if b'"kind":"sdk_stats"' not in r.value) == st["sent"]
    # every record of one instance shares its key: its ledger stays in order on one partition
    assert {r.key for r in records if b'"kind":"sdk_stats"' in r.value} == {client.instance_id.encode()}


def test_ledger_interval_is_a_validated_option():
    from aipulse.config import DEFAULT_LEDGER_INTERVAL_S, Config

    assert Config.load(env={}).ledger_interval_s == DEFAULT_LEDGER_INTERVAL_S
    assert Config.load(env={"AIPULSE_LEDGER_INTERVAL_S": "0"}).ledger_interval_s == 0
    with pytest.raises(ValueError, match="ledger_interval_s must be 0"):
        Config.load(env={}, ledger_interval_s=0.1)
    with pytest.raises(ValueError, match="AIPULSE_LEDGER_INTERVAL_S='soon' is not a number"):
        Config.load(env={"AIPULSE_LEDGER_INTERVAL_S": "soon"})


def test_ledger_off_sends_nothing_of_its_own(sdk_kafka):
    topic = create_topic(sdk_kafka)
    client = aipulse.init(kafka_bootstrap=sdk_kafka, topic=topic, service="ledger-off", user_salt="s",
                          ledger_interval_s=0, linger_ms=5)
    for _ in range(5):
        aipulse.record(feature="f", latency_ms=1.0)
    aipulse.close(timeout=5)
    assert client.stats()["sent"] == 5
    records = consume(sdk_kafka, topic, 6, timeout=5)
    assert len(records) == 5 and not ledger_of(records)

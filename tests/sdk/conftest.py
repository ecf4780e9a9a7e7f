"""Fixtures of the SDK tests.

``sdk_kafka`` is the real broker's bootstrap: ``$AIPULSE_TEST_KAFKA`` when set, else the root
conftest's ``kafka_bootstrap`` (the session's test stack).
``captured`` swaps in a client that runs the real sender-side preparation synchronously and
keeps the resulting wire events, for tests of what is emitted without a broker.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import pytest

import aipulse
from aipulse import client as client_mod
from aipulse.client import Client, NoopClient
from aipulse.config import Config
from aipulse.transport import Invalid

FALLBACK_BOOTSTRAP = "127.0.0.1:39092"


class CaptureClient(Client):
    """The real Client, with ``submit`` preparing at once and keeping the JSON it would send."""

    def __init__(self, **options):
        options.setdefault("user_salt", "test-salt")
        super().__init__(Config.load(env={}, **options))
        self.events: list[dict] = []
        self.invalid: list[str] = []
        self.keys: list[bytes] = []
        self.submit = self.capture   # the Client's submit is an instance attribute (the transport's)

    def capture(self, kind, fields):
        try:
            key, value, _ts = self.prepare((kind, fields))
        except Invalid as err:
            self.invalid.append(str(err))
            return False
        self.keys.append(key)
        self.events.append(json.loads(value))
        return True

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["kind"] == kind]


@pytest.fixture
def captured():
    cap = CaptureClient(service="test")
    old = client_mod._client
    client_mod._client = cap
    try:
        yield cap
    finally:
        client_mod._client = old if not isinstance(old, CaptureClient) else NoopClient()


@pytest.fixture(scope="session")
def sdk_kafka(request) -> str:
    """``$AIPULSE_TEST_KAFKA`` when set (a broker you run), else the root conftest's
    ``kafka_bootstrap`` (the test stack's broker), else 127.0.0.1:39092."""
    if os.environ.get("AIPULSE_TEST_KAFKA"):
        return os.environ["AIPULSE_TEST_KAFKA"]
    try:
        return request.getfixturevalue("kafka_bootstrap")
    except pytest.FixtureLookupError:
        return FALLBACK_BOOTSTRAP


def create_topic(bootstrap: str, partitions: int = 1) -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    name = f"aipulse.sdk-test.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


@pytest.fixture
def topic(sdk_kafka) -> str:
    return create_topic(sdk_kafka)


def consume(bootstrap: str, topic: str, expect: int, timeout: float = 20.0) -> list:
    """Read ``topic`` from the start until ``expect`` records arrived (or the timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
    finally:
        consumer.close()
    return out


@pytest.fixture
def sdk(sdk_kafka, topic):
    """The real SDK, initialised against the real broker on a fresh topic."""
    client = aipulse.init(kafka_bootstrap=sdk_kafka, topic=topic, service="sdk-test",
                          user_salt="test-salt", linger_ms=5)
    wait_connected()
    yield client
    aipulse.close(timeout=5)


def wait_connected(timeout: float = 15.0) -> None:
    # The sender starts with the first event: emit nothing, just start it.
    client = client_mod.get_client()
    with client.transport._lock:
        if not client.transport._started:
            client.transport._start()
    deadline = time.monotonic() + timeout
    while not aipulse.stats()["kafka_connected"]:
        assert time.monotonic() < deadline, "the SDK did not connect to Kafka"
        time.sleep(0.02)

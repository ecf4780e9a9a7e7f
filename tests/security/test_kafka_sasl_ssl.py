"""Kafka over SASL_SSL, for real: a broker with a SASL_SSL listener (certificates made here with
openssl), the SDK -> worker -> ClickHouse path over it, the alert producer over it, and the
clear line a wrong password or an untrusted certificate gives.

The module starts its own stack (broker + ClickHouse endpoint in a tmp AIPULSE_HOME on free
ports) and stops it at the end, by the pids it recorded.
"""
from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
import uuid

import pytest
from support import wait_for

import aipulse
from aipulse.kafka_security import KafkaSecurity
from aipulse_stream.config import Settings
from security.certs import make_certs

pytestmark = pytest.mark.integration

USER = "aipulse-app"
MECHANISM = "SCRAM-SHA-512"
EVENTS = 200


class SecureStack:
    def __init__(self, settings, plaintext, sasl_ssl, certs, password, other_ca):
        self.settings = settings          # the stack's settings (SASL_SSL bootstrap and credentials)
        self.plaintext = plaintext
        self.bootstrap = sasl_ssl         # the SASL_SSL listener
        self.certs = certs
        self.password = password
        self.other_ca = other_ca          # a CA that did not sign the broker's certificate

    def security(self, mechanism=MECHANISM, password=None, cafile=None) -> KafkaSecurity:
        return KafkaSecurity(protocol="SASL_SSL", sasl_mechanism=mechanism, sasl_username=USER,
                             sasl_password=self.password if password is None else password,
                             ssl_cafile=str(cafile or self.certs.ca_pem))

    def env(self, password=None) -> dict:
        """What a worker is given: only the SASL_SSL listener and its credentials."""
        return {"AIPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AIPULSE_KAFKA_SASL_MECHANISM": MECHANISM,
                "AIPULSE_KAFKA_SASL_USERNAME": USER,
                "AIPULSE_KAFKA_SASL_PASSWORD": self.password if password is None else password,
                "AIPULSE_KAFKA_SSL_CAFILE": str(self.certs.ca_pem)}


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """Broker with a SASL_SSL listener, then `up()` as against an external secured broker
    (topics created over SASL_SSL), the ClickHouse endpoint and its tables; no worker."""
    from aipulse_local.kafka import SaslSslListener, start_kafka
    from aipulse_local.stack import clickhouse_url, down, up
    from aipulse_local.state import StackState

    home = tmp_path_factory.mktemp("aipulse-secure-home")
    certs = make_certs(home / "certs")
    other = make_certs(home / "other-ca")
    password = secrets.token_urlsafe(12)
    settings = Settings(home=home)
    try:
        broker = start_kafka(home / "kafka", sasl_ssl=SaslSslListener(certs.keystore, certs.keystore_password,
                                                                      users={USER: password}))
        StackState(home).put("kafka", pid=broker.pid, address=broker.bootstrap, log=str(broker.log), kind="kafka")
        stack = SecureStack(settings, broker.bootstrap, broker.sasl_ssl_bootstrap, certs, password, other.ca_pem)
        settings = Settings.from_env({"AIPULSE_HOME": str(home), "AIPULSE_KAFKA_BOOTSTRAP": stack.bootstrap,
                                      **stack.env()})
        stack.settings = settings
        up(settings, progress=lambda m: print("[secure stack]", m), worker=False)
        stack.clickhouse_url = clickhouse_url(settings)
        yield stack
    finally:
        down(settings)


@pytest.fixture
def sdk_close():
    yield
    aipulse.close(timeout=5)


def _produce(secure, topic: str, value: bytes) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=secure.bootstrap, **secure.security().client_options())
    try:
        producer.send(topic, key=b"k", value=value).get(timeout=15)
    finally:
        producer.close()


def _consume_values(secure, topic: str) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=secure.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=15000, **secure.security().client_options())
    try:
        return [m.value for m in consumer]
    finally:
        consumer.close()


def _count(ch, service: str) -> int:
    return ch.query("SELECT count() FROM aipulse.interactions FINAL WHERE service = %(s)s",
                    {"s": service}).result_rows[0][0]


def test_sdk_to_worker_to_clickhouse_over_sasl_ssl(secure, sdk_close):
    from aipulse_local.stack import start_worker, stop_component
    from aipulse_stream.storage.clickhouse import client_for_url

    service = f"sec-{uuid.uuid4().hex[:8]}"
    worker_settings = secure.settings
    worker = start_worker(worker_settings, name="secure-worker", extra_env=secure.env())
    try:
        aipulse.init(kafka_bootstrap=secure.bootstrap, service=service, user_salt="s",
                     kafka_security=secure.security())
        for i in range(EVENTS):
            aipulse.record(feature="chat", model="gpt-4o-mini", latency_ms=10.0 + i)
        assert aipulse.flush(20)
        st = aipulse.stats()
        assert st["sent"] == EVENTS and not any(st["dropped"].values()), st
        bad = f"not an event {service}".encode()
        _produce(secure, secure.settings.topic, bad)  # the worker's own producer must dead-letter it
        ch = client_for_url(secure.clickhouse_url)
        try:
            wait_for(lambda: _count(ch, service) == EVENTS, timeout=60,
                     what=f"the SASL_SSL worker to store {EVENTS} interactions")
        finally:
            ch.close()
        assert bad in _consume_values(secure, secure.settings.dlq_topic)
    finally:
        stop_component(worker_settings, "secure-worker")
    log = open(worker["log"]).read()
    assert secure.password not in log  # the secret never reaches a log


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_every_mechanism_delivers(secure, sdk_close, mechanism):
    aipulse.init(kafka_bootstrap=secure.bootstrap, service="sec-mech", user_salt="s",
                 kafka_security=secure.security(mechanism=mechanism))
    for _ in range(20):
        aipulse.record(feature="chat", latency_ms=1.0)
    assert aipulse.flush(20)
    st = aipulse.stats()
    assert st["sent"] == 20 and not any(st["dropped"].values()), st


def test_sdk_wrong_password_counts_auth_drops_and_says_which_variable(secure, sdk_close, caplog):
    caplog.set_level(logging.WARNING, logger="aipulse")
    aipulse.init(kafka_bootstrap=secure.bootstrap, service="sec-bad", user_salt="s",
                 kafka_security=secure.security(password="not-the-password"), connect_timeout_ms=2000)
    for _ in range(30):
        aipulse.record(feature="chat", latency_ms=1.0)   # never raises into the app
    wait_for(lambda: any("refused the SASL credentials" in r.getMessage() for r in caplog.records),
             timeout=30, what="the SDK's auth warning")
    client = aipulse.get_client()
    client.close(timeout=1)
    st = client.stats()
    assert st["dropped"]["auth"] == 30 and st["sent"] == 0, st
    lines = [r.getMessage() for r in caplog.records if "refused the SASL credentials" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]  # one line, once (rate-limited)
    assert "AIPULSE_KAFKA_SASL_PASSWORD" in lines[0] and "not-the-password" not in lines[0]


def test_sdk_untrusted_certificate_counts_tls_drops(secure, sdk_close, caplog):
    caplog.set_level(logging.WARNING, logger="aipulse")
    aipulse.init(kafka_bootstrap=secure.bootstrap, service="sec-tls", user_salt="s",
                 kafka_security=secure.security(cafile=secure.other_ca), connect_timeout_ms=2000)
    for _ in range(10):
        aipulse.record(feature="chat", latency_ms=1.0)
    wait_for(lambda: any("AIPULSE_KAFKA_SSL_CAFILE" in r.getMessage() for r in caplog.records),
             timeout=30, what="the SDK's TLS warning")
    client = aipulse.get_client()
    client.close(timeout=1)
    st = client.stats()
    assert st["dropped"]["tls"] == 10 and st["sent"] == 0, st


def test_worker_wrong_password_exits_with_one_line(secure):
    from aipulse_local.stack import worker_env

    env = worker_env(secure.settings, 0, secure.env(password="not-the-password"))
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "aipulse_stream.worker"], env=env, capture_output=True,
                         text=True, timeout=90)
    assert res.returncode == 2, res.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("aipulse worker:"), res.stderr[-2000:]  # the whole output
    assert "refused the SASL credentials" in errors[0] and "AIPULSE_KAFKA_SASL_PASSWORD" in errors[0]
    assert "not-the-password" not in res.stderr


def test_worker_untrusted_certificate_exits_with_one_line(secure):
    from aipulse_local.stack import worker_env

    env = worker_env(secure.settings, 0, {**secure.env(), "AIPULSE_KAFKA_SSL_CAFILE": str(secure.other_ca)})
    res = subprocess.run([sys.executable, "-m", "aipulse_stream.worker"], env=env, capture_output=True,
                         text=True, timeout=90)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aipulse worker: TLS with Kafka at"), res.stderr[-2000:]
    assert "AIPULSE_KAFKA_SSL_CAFILE" in lines[0]


def test_worker_bad_combination_fails_before_connecting(secure):
    env = dict(os.environ, AIPULSE_HOME=str(secure.settings.state_dir), AIPULSE_KAFKA_BOOTSTRAP=secure.bootstrap,
               AIPULSE_CLICKHOUSE_URL=secure.clickhouse_url, AIPULSE_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
               AIPULSE_KAFKA_SASL_MECHANISM="SCRAM-SHA-1")
    res = subprocess.run([sys.executable, "-m", "aipulse_stream.worker"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "aipulse worker: AIPULSE_KAFKA_SASL_MECHANISM='SCRAM-SHA-1' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")


def test_alert_producer_publishes_over_sasl_ssl(secure):
    from aipulse_alerts.detector import Alert
    from aipulse_alerts.notify import Notifier

    topic = f"aipulse.alerts.sec-{uuid.uuid4().hex[:6]}"
    options = secure.security().client_options()
    notifier = Notifier(None, kafka_bootstrap=secure.bootstrap, topic=topic, kafka_options=options)
    alert = Alert(rule="p99_ceiling", status="firing", labels={"service": "sec"}, annotations={},
                  starts_at=time.time(), ends_at=None, value=1.0, threshold=0.5, baseline=None,
                  group={"service": "sec"})
    try:
        notifier.send([alert])
        assert notifier.sent["kafka"] == 1 and notifier.failures["kafka"] == 0
    finally:
        notifier.close()
    values = _consume_values(secure, topic)
    assert len(values) == 1 and alert.alert_id in values[0].decode()


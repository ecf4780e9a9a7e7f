"""The Kafka security settings as pure logic: every bad combination fails at construction with one
line naming the variable, and the SDK, the worker and the alert producer read one shape."""
from __future__ import annotations

import ssl

import pytest

from aipulse.config import Config
from aipulse.kafka_security import KafkaSecurity, KafkaSecurityError, classify_failure
from aipulse_stream.config import ConfigError, Settings
from security.certs import make_certs

P = "AIPULSE_KAFKA_SECURITY_PROTOCOL"
SASL_OK = {P: "SASL_PLAINTEXT", "AIPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
           "AIPULSE_KAFKA_SASL_USERNAME": "app", "AIPULSE_KAFKA_SASL_PASSWORD": "pw"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return str(make_certs(tmp_path_factory.mktemp("ca")).ca_pem)


@pytest.mark.parametrize("env, variable", [
    ({P: "TLS"}, P),
    ({P: "SASL_SSL"}, "AIPULSE_KAFKA_SASL_MECHANISM"),
    ({**SASL_OK, "AIPULSE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "AIPULSE_KAFKA_SASL_MECHANISM"),
    ({**SASL_OK, "AIPULSE_KAFKA_SASL_USERNAME": ""}, "AIPULSE_KAFKA_SASL_USERNAME"),
    ({**SASL_OK, "AIPULSE_KAFKA_SASL_PASSWORD": " "}, "AIPULSE_KAFKA_SASL_PASSWORD"),
    ({"AIPULSE_KAFKA_SASL_USERNAME": "app"}, "AIPULSE_KAFKA_SASL_USERNAME"),            # PLAINTEXT + SASL
    ({P: "SSL", "AIPULSE_KAFKA_SASL_PASSWORD": "pw"}, "AIPULSE_KAFKA_SASL_PASSWORD"),  # SSL + SASL
    ({**SASL_OK, "AIPULSE_KAFKA_SSL_CAFILE": "/etc/ca.pem"}, "AIPULSE_KAFKA_SSL_CAFILE"),  # no TLS
    ({P: "SSL", "AIPULSE_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "AIPULSE_KAFKA_SSL_CAFILE"),
    ({P: "SSL", "AIPULSE_KAFKA_SSL_KEYFILE": "/etc/key.pem"}, "AIPULSE_KAFKA_SSL_KEYFILE"),  # key, no cert
])
def test_bad_combinations_fail_with_one_line_naming_the_variable(env, variable):
    with pytest.raises(KafkaSecurityError) as sdk_err:
        Config.load(env=env)                      # the SDK, at init()
    with pytest.raises(ConfigError) as worker_err:
        Settings.from_env(env)                    # the worker and the alert producer
    for err in (sdk_err.value, worker_err.value):
        text = str(err)
        assert variable in text and "\n" not in text
        assert text.split()[0].startswith(variable)  # the variable to fix comes first
    assert str(sdk_err.value) == str(worker_err.value)


def test_a_file_that_is_not_pem_fails_at_construction(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(KafkaSecurityError, match="^AIPULSE_KAFKA_SSL_CAFILE=.*not a PEM CA file"):
        KafkaSecurity(protocol="SSL", ssl_cafile=str(bad))


def test_plaintext_is_the_default_and_adds_no_options():
    assert KafkaSecurity.from_env({}).client_options() == {}
    assert Config.load(env={}).kafka_security.is_plaintext
    assert Settings.from_env({}).kafka_security.is_plaintext


def test_sasl_ssl_options_for_kafka_python_and_aiokafka(ca):
    env = {**SASL_OK, P: "sasl_ssl", "AIPULSE_KAFKA_SASL_MECHANISM": "scram-sha-512", "AIPULSE_KAFKA_SSL_CAFILE": ca}
    sdk = Config.load(env=env).kafka_security
    worker = Settings.from_env(env).kafka_security
    assert sdk == worker
    opts = sdk.client_options()
    assert opts["security_protocol"] == "SASL_SSL" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("app", "pw")
    ctx = opts["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == 1  # exactly the given CA, not the system's


def test_ssl_without_cafile_trusts_the_system_cas():
    ctx = KafkaSecurity(protocol="SSL").ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_the_password_stays_out_of_reprs_and_lines():
    sec = KafkaSecurity.from_env({**SASL_OK, "AIPULSE_KAFKA_SASL_PASSWORD": "hunter2-secret"})
    settings = Settings.from_env({**SASL_OK, "AIPULSE_KAFKA_SASL_PASSWORD": "hunter2-secret"})
    for text in (repr(sec), sec.describe(), sec.failure_line("auth", "b:9093"), repr(settings)):
        assert "hunter2-secret" not in text


def test_faust_credentials_follow_the_protocol(ca):
    import faust

    from aipulse_stream.app import broker_credentials

    sasl_ssl = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p",
                             ssl_cafile=ca)
    creds = broker_credentials(sasl_ssl)
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_SSL"
    assert creds.mechanism.value == "PLAIN" and creds.ssl_context is not None
    plain = broker_credentials(KafkaSecurity(**{**sasl_ssl.__dict__, "protocol": "SASL_PLAINTEXT", "ssl_cafile": None}))
    assert plain.protocol.value == "SASL_PLAINTEXT"
    assert isinstance(broker_credentials(KafkaSecurity(protocol="SSL", ssl_cafile=ca)), faust.SSLCredentials)
    assert broker_credentials(KafkaSecurity()) is None


class SaslAuthenticationFailedError(Exception):
    """Named as kafka-python's and aiokafka's: classify_failure matches by class name."""


def test_classify_failure():
    assert classify_failure(SaslAuthenticationFailedError("bad")) == "auth"
    wrapped = RuntimeError("Unable to bootstrap")
    wrapped.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert classify_failure(wrapped) == "tls"
    assert classify_failure(ConnectionError("Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED]")) == "tls"
    assert classify_failure(ConnectionRefusedError("refused")) is None
    assert classify_failure(None) is None

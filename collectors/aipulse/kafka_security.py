"""Kafka security settings (TLS and SASL), one shape for the SDK, the worker and the alert producer.

Standard library only, so ``import aipulse`` stays light. Read from the environment::

    >>> from aipulse.kafka_security import KafkaSecurity
    >>> sec = KafkaSecurity.from_env({"AIPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    ...                                "AIPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    ...                                "AIPULSE_KAFKA_SASL_USERNAME": "app",
    ...                                "AIPULSE_KAFKA_SASL_PASSWORD": "s3cret"})
    >>> sec.describe()
    "SASL_PLAINTEXT, SCRAM-SHA-512 as 'app'"
    >>> sorted(sec.client_options())
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']

``client_options()`` are keyword arguments that kafka-python's ``KafkaProducer`` and aiokafka's
clients both accept (the two libraries share these names); the worker turns the same object
into Faust's ``broker_credentials``. A bad combination fails at construction with one
:class:`KafkaSecurityError` line naming the variable to fix::

    >>> KafkaSecurity.from_env({"AIPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    ...                         "AIPULSE_KAFKA_SASL_MECHANISM": "PLAIN"})
    Traceback (most recent call last):
    ...
    aipulse.kafka_security.KafkaSecurityError: AIPULSE_KAFKA_SASL_USERNAME is required with AIPULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL

Variables (all optional; unset or empty means the default):

===================================  ======================================================
``AIPULSE_KAFKA_SECURITY_PROTOCOL``  ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``,
                                     ``SASL_SSL``
``AIPULSE_KAFKA_SASL_MECHANISM``     ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``
                                     (required with a SASL protocol)
``AIPULSE_KAFKA_SASL_USERNAME``      SASL user (required with a SASL protocol)
``AIPULSE_KAFKA_SASL_PASSWORD``      SASL password (required with a SASL protocol)
``AIPULSE_KAFKA_SSL_CAFILE``         PEM file of the CA(s) that signed the brokers'
                                     certificates; unset = the system's trusted CAs
``AIPULSE_KAFKA_SSL_CERTFILE``       PEM client certificate, for brokers that require
                                     mutual TLS (may also hold the key)
``AIPULSE_KAFKA_SSL_KEYFILE``        PEM private key of the client certificate
===================================  ======================================================
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# KafkaSecurity field -> environment variable.
ENV_VARS = {
    "protocol": "AIPULSE_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "AIPULSE_KAFKA_SASL_MECHANISM",
    "sasl_username": "AIPULSE_KAFKA_SASL_USERNAME",
    "sasl_password": "AIPULSE_KAFKA_SASL_PASSWORD",
    "ssl_cafile": "AIPULSE_KAFKA_SSL_CAFILE",
    "ssl_certfile": "AIPULSE_KAFKA_SSL_CERTFILE",
    "ssl_keyfile": "AIPULSE_KAFKA_SSL_KEYFILE",
}
SASL_VARS = ("sasl_mechanism", "sasl_username", "sasl_password")
SSL_VARS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")

# Exception class names (kafka-python, aiokafka) that mean "the broker refused the credentials".
# Matched by name so this module needs neither library.
_AUTH_ERRORS = {"SaslAuthenticationFailedError", "SaslAuthenticationFailed", "AuthenticationFailedError",
                "IllegalSaslStateError", "UnsupportedSaslMechanismError", "AuthenticationMethodNotSupported"}
# Both libraries wrap a failed TLS handshake in a connection error carrying ssl's text.
_TLS_MARKS = ("CERTIFICATE_VERIFY_FAILED", "[SSL", "Handshake failed", "certificate verify failed")


def classify_failure(err: BaseException | None) -> str | None:
    """``"auth"`` if `err` (or its cause) is the broker refusing the SASL credentials, ``"tls"``
    if it is a failed TLS handshake or certificate check, else None (an outage, say)."""
    for _ in range(8):
        if err is None:
            return None
        names = {c.__name__ for c in type(err).__mro__}
        text = str(err)
        if names & _AUTH_ERRORS or "SaslAuthenticationFailed" in text:
            return "auth"
        if isinstance(err, ssl.SSLError) or any(m in text for m in _TLS_MARKS):
            return "tls"
        err = err.__cause__ or err.__context__
    return None


def diagnose(security: "KafkaSecurity", bootstrap: str, timeout: float = 5.0) -> str | None:
    """Log in to the first reachable broker of `bootstrap` ourselves and say why it fails:
    ``"tls"`` (handshake or certificate), ``"auth"`` (SASL refused), else None (it worked, or
    no broker answered: an outage, not a configuration mistake).

    kafka-python's producer reports a refused login as "Unable to bootstrap" (after an SSL
    login the broker's answer is often lost to the disconnect that follows it), so the SDK
    asks here, with the standard library only: a TLS handshake, then Kafka's SaslHandshake v1
    and SaslAuthenticate v1 for PLAIN or SCRAM (RFC 5802)::

        diagnose(KafkaSecurity.from_env(), "broker:9093")   # -> "auth" for a wrong password
    """
    for server in (b.strip() for b in bootstrap.split(",") if b.strip()):
        host, _, port = server.rpartition(":")
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        except (OSError, ValueError):
            continue
        try:
            if security.uses_ssl:
                try:
                    sock = security.ssl_context().wrap_socket(sock, server_hostname=host)
                except ssl.SSLError:  # SSLCertVerificationError included
                    return "tls"
            if security.uses_sasl and not _sasl_login(sock, security):
                return "auth"
            return None
        except (OSError, ValueError, struct.error):
            continue  # cut off mid-way: try the next broker
        finally:
            sock.close()
    return None


def _sasl_login(sock: socket.socket, sec: "KafkaSecurity") -> bool:
    mech = sec.sasl_mechanism or "PLAIN"
    resp = _call(sock, SASL_HANDSHAKE, 1, 1, _str(mech))
    if struct.unpack_from(">h", resp)[0] != 0:
        return False  # the broker does not enable this mechanism
    user, password = sec.sasl_username or "", sec.sasl_password or ""
    if mech == "PLAIN":
        ok, _ = _authenticate(sock, 2, f"\0{user}\0{password}".encode())
        return ok
    digest = "sha256" if mech == "SCRAM-SHA-256" else "sha512"
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={base64.b64encode(os.urandom(18)).decode()}"
    ok, server_first = _authenticate(sock, 2, f"n,,{first_bare}".encode())
    if not ok:
        return False
    attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = hashlib.new(digest, client_key).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{final_bare}".encode()
    signature = hmac.new(stored_key, auth_message, digest).digest()
    proof = bytes(x ^ y for x, y in zip(client_key, signature))
    ok, _ = _authenticate(sock, 3, f"{final_bare},p={base64.b64encode(proof).decode()}".encode())
    return ok


SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36  # Kafka API keys


def _authenticate(sock: socket.socket, correlation: int, token: bytes) -> tuple[bool, bytes]:
    resp = _call(sock, SASL_AUTHENTICATE, 1, correlation, struct.pack(">i", len(token)) + token)
    error, msg_len = struct.unpack_from(">hh", resp)
    at = 4 + max(msg_len, 0)
    (n,) = struct.unpack_from(">i", resp, at)
    return error == 0, resp[at + 4: at + 4 + max(n, 0)]


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _call(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    """One request (header v1) and its response body (header v0 stripped)."""
    msg = struct.pack(">hhi", api_key, version, correlation) + _str("aipulse-diagnose") + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv(sock, 4))
    return _recv(sock, size)[4:]


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


class KafkaSecurityError(ValueError):
    """A Kafka security setting that cannot work, as one line naming the variable."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Validated TLS/SASL settings of one Kafka client. Build it with :meth:`from_env`."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)  # never in a repr or a log line
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "KafkaSecurity":
        env = os.environ if env is None else env
        values = {}
        for name, var in ENV_VARS.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()  # as the worker's Settings reads them
        return cls(**values)

    def __post_init__(self) -> None:
        # Case-insensitive names, stored the way Kafka spells them.
        object.__setattr__(self, "protocol", (self.protocol or "PLAINTEXT").upper())
        if self.sasl_mechanism:
            object.__setattr__(self, "sasl_mechanism", self.sasl_mechanism.upper())
        self._validate()

    # ------------------------------------------------------------------ what it means

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol.endswith("SSL")

    @property
    def is_plaintext(self) -> bool:
        return self.protocol == "PLAINTEXT"

    def describe(self) -> str:
        """A log-safe summary (no password): ``SASL_SSL, SCRAM-SHA-512 as 'app'``."""
        if self.uses_sasl:
            return f"{self.protocol}, {self.sasl_mechanism} as {self.sasl_username!r}"
        return self.protocol

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (certificate and host name verified), or None without TLS."""
        if not self.uses_ssl:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.ssl_cafile)
        except (ssl.SSLError, OSError) as err:
            raise KafkaSecurityError(f"{ENV_VARS['ssl_cafile']}={self.ssl_cafile}: not a PEM CA file ({err})") from None
        if self.ssl_certfile:
            try:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            except (ssl.SSLError, OSError) as err:
                var = ENV_VARS["ssl_keyfile" if self.ssl_keyfile else "ssl_certfile"]
                raise KafkaSecurityError(f"{var}: cannot load the client certificate and key ({err})") from None
        return ctx

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's and aiokafka's clients (empty for PLAINTEXT)."""
        if self.is_plaintext:
            return {}
        opts: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_ssl:
            opts["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            opts.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                        sasl_plain_password=self.sasl_password)
        return opts

    # ------------------------------------------------------------------ failures

    def failure_line(self, kind: str, bootstrap: str) -> str:
        """One line saying what to fix, for a failure classified by :func:`classify_failure`."""
        if kind == "auth":
            return (f"Kafka at {bootstrap} refused the SASL credentials ({self.describe()}): check "
                    f"{ENV_VARS['sasl_username']} and {ENV_VARS['sasl_password']} "
                    f"(and {ENV_VARS['sasl_mechanism']})")
        ca = self.ssl_cafile or "the system's CAs"
        return (f"TLS with Kafka at {bootstrap} failed (certificate not trusted by {ca}, or host name "
                f"mismatch): check {ENV_VARS['ssl_cafile']} and {ENV_VARS['protocol']}={self.protocol}")

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        proto_var = ENV_VARS["protocol"]
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"{proto_var}={self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.uses_sasl:
            if not self.sasl_mechanism:
                raise KafkaSecurityError(f"{ENV_VARS['sasl_mechanism']} is required with {proto_var}={self.protocol} "
                                         f"({', '.join(MECHANISMS)})")
            if self.sasl_mechanism not in MECHANISMS:
                raise KafkaSecurityError(f"{ENV_VARS['sasl_mechanism']}={self.sasl_mechanism!r} is not one of "
                                         f"{', '.join(MECHANISMS)}")
            for name in ("sasl_username", "sasl_password"):
                if not getattr(self, name):
                    raise KafkaSecurityError(f"{ENV_VARS[name]} is required with {proto_var}={self.protocol}")
        else:
            for name in SASL_VARS:
                if getattr(self, name):
                    raise KafkaSecurityError(f"{ENV_VARS[name]} is set but {proto_var}={self.protocol} uses no SASL: "
                                             f"set {proto_var} to SASL_SSL (or SASL_PLAINTEXT), or unset {ENV_VARS[name]}")
        if not self.uses_ssl:
            for name in SSL_VARS:
                if getattr(self, name):
                    raise KafkaSecurityError(f"{ENV_VARS[name]} is set but {proto_var}={self.protocol} uses no TLS: "
                                             f"set {proto_var} to SSL or SASL_SSL, or unset {ENV_VARS[name]}")
            return
        if self.ssl_keyfile and not self.ssl_certfile:
            raise KafkaSecurityError(f"{ENV_VARS['ssl_keyfile']} is set without {ENV_VARS['ssl_certfile']}: "
                                     "a client key needs its certificate")
        for name in SSL_VARS:
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise KafkaSecurityError(f"{ENV_VARS[name]}={path}: no such file")
        self.ssl_context()  # a file that is not PEM fails here, at construction, not at first connect

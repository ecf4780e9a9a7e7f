"""Throw-away TLS material for the Kafka security tests, made with openssl in a tmp dir.

    certs = make_certs(tmp_path)        # a CA, a broker certificate for 127.0.0.1/localhost
    certs.ca_pem, certs.keystore        # PEM CA for the clients, PKCS12 keystore for the broker
    other = make_certs(tmp_path / "x")  # another CA: its ca_pem does not trust `certs`' broker
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

DAYS = "2"


@dataclass(frozen=True)
class Certs:
    ca_pem: Path
    keystore: Path
    keystore_password: str


def _run(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {res.stderr.strip()[-300:]}")


def make_certs(folder: Path) -> Certs:
    if not shutil.which("openssl"):
        pytest.fail("openssl is not installed: apt-get install openssl (the Kafka security tests make their certificates with it)")
    folder.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(8)
    # EC keys: generated in milliseconds, and every client here speaks ECDSA.
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca.key", "-out", "ca.pem", "-days", DAYS, "-subj", "/CN=aipulse-test-ca", cwd=folder)
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "broker.pem", "-days", DAYS, "-extfile", "san.ext", cwd=folder)
    _run("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
         "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{password}", cwd=folder)
    return Certs(ca_pem=folder / "ca.pem", keystore=folder / "broker.p12", keystore_password=password)

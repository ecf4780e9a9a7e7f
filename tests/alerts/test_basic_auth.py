"""Unit tests: the Alertmanager credential travels as basic auth and never reaches a log."""
from __future__ import annotations

import asyncio

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aipulse_alerts import basic_auth
from aipulse_alerts.notify import Notifier, post_alertmanager
from aipulse_alerts.detector import Alert

PASSWORD = "pw-9f3c1d2e7a"


def make_alert(now: float = 1000.0) -> Alert:
    return Alert(rule="fallback_rate_surge", status="firing",
                 labels={"alertname": "fallback_rate_surge", "severity": "critical", "service": "svc"},
                 annotations={"summary": "s"}, starts_at=now, ends_at=None, value=0.3, threshold=0.1,
                 baseline=0.02, group={"service": "svc"})


def test_split_moves_user_info_out_of_the_url_and_decodes_it():
    assert basic_auth.split("http://aipulse:%40b%3Ac@am:9093/x?y=1") == ("http://am:9093/x?y=1", "aipulse", "@b:c")
    assert basic_auth.split("http://am:9093") == ("http://am:9093", None, None)
    assert basic_auth.split("http://u:p@[::1]:9093/") == ("http://[::1]:9093/", "u", "p")


def test_redact_hides_the_password_only():
    assert basic_auth.redact(f"http://aipulse:{PASSWORD}@am:9093/api") == "http://aipulse:***@am:9093/api"
    assert basic_auth.redact("http://am:9093") == "http://am:9093"
    assert basic_auth.redact(None) is None


def test_request_sends_basic_auth_and_no_user_info_in_the_request_url():
    req = basic_auth.request(f"http://aipulse:{PASSWORD}@127.0.0.1:9093/api/v2/alerts", data=b"[]", method="POST")
    assert req.full_url == "http://127.0.0.1:9093/api/v2/alerts"
    kind, token = req.get_header("Authorization").split()
    assert kind == "Basic" and base64.b64decode(token).decode() == f"aipulse:{PASSWORD}"
    assert basic_auth.request("http://127.0.0.1:9093/").get_header("Authorization") is None


class _Recorder:
    """A local HTTP server answering 401 unless the expected credential is sent."""

    def __init__(self, user: str, password: str):
        self.seen: list[tuple[str | None, list]] = []
        want = basic_auth.header(user, password)
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                auth = self.headers.get("Authorization")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rec.seen.append((auth, body))
                self.send_response(200 if auth == want else 401)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder():
    r = _Recorder("aipulse", PASSWORD)
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_post_sends_the_urls_credential(recorder):
    post_alertmanager(f"http://aipulse:{PASSWORD}@{recorder.address}", [{"labels": {"a": "1"}}])
    assert recorder.seen[-1][0] == basic_auth.header("aipulse", PASSWORD)


def test_a_401_names_the_setting_to_fix_and_not_the_password(recorder):
    with pytest.raises(OSError) as e:
        post_alertmanager(f"http://aipulse:wrong-password@{recorder.address}", [])
    assert "401" in str(e.value) and "AIPULSE_ALERTMANAGER_URL" in str(e.value)
    assert "wrong-password" not in str(e.value)


def test_notifier_logs_the_url_without_its_password_and_retries(recorder, caplog):
    n = Notifier(f"http://aipulse:wrong-{PASSWORD}@{recorder.address}", clock=lambda: 1000.0, flush_timeout_s=1.0)
    with caplog.at_level(logging.WARNING):
        n.send([make_alert()])   # retried with the shared backoff until the flush deadline
    assert n.failures["alertmanager"] >= 2 and n.sent["alertmanager"] == 0
    assert PASSWORD not in caplog.text
    assert f"http://aipulse:***@{recorder.address}" in caplog.text
    n._am_url = f"http://aipulse:{PASSWORD}@{recorder.address}"   # the credential fixed: the kept alert goes
    assert asyncio.run(n.flush(5.0))
    assert n.sent["alertmanager"] == 1

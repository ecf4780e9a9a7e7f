"""End to end on the real stack: SDK -> Kafka -> worker -> ClickHouse -> the evaluator -> real Alertmanager -> webhook.

Steady traffic (two models, fallback rate 2%), then the fallback rate of one model jumps to
30%: a local webhook receiver behind a real Alertmanager must get ONE firing notification
with the right labels; the detection time (first degraded event -> webhook delivery) is
measured and printed; after recovery ONE resolved notification arrives.

The evaluator runs in a dedicated worker (own consumer group and database, so the session's
worker and other tests are untouched; it is elected alone in its group) and posts to a dedicated Alertmanager whose webhook is
the receiver. Windows, sustain and Alertmanager's paging group_wait are the defaults, so the
detection time is the default configuration's; only the rule's resolve_after (1m -> 10s) and
the paging group_interval (30s -> 10s) are shortened to keep the recovery phase short.
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from support import wait_for

pytestmark = pytest.mark.integration

RATE_PER_MODEL = 40          # interactions per second per model
STEADY_S = 75           # > the rule window (60s) + time for the baseline min_volume (300)
DETECT_TIMEOUT_S = 60
RESOLVE_TIMEOUT_S = 120
DUPLICATE_WATCH_S = 8
RULE = "fallback_rate_surge"


class Receiver:
    """Alertmanager's webhook target: records (received_at, alert) for every alert of every POST."""

    def __init__(self):
        self.items: list[tuple[float, dict]] = []
        recv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.time()
                for a in body.get("alerts", []):
                    recv.items.append((now, a))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, service: str, status: str | None = None):
        return [(t, a) for t, a in self.items
                if a["labels"].get("service") == service and (status is None or a["status"] == status)]


class Traffic(threading.Thread):
    """Interactions through the SDK at a steady rate; ``fallback_a`` is model m-a's fallback rate."""

    def __init__(self, aipulse):
        super().__init__(daemon=True)
        self.aipulse = aipulse
        self.fallback_a = 0.02
        self.first_degraded_at = None
        self.stop_flag = threading.Event()
        self.sent = 0

    def run(self):
        rng = random.Random(3)
        tick = 0.05
        per_tick = RATE_PER_MODEL * tick
        carry = 0.0
        while not self.stop_flag.is_set():
            started = time.time()
            carry += per_tick
            n, carry = int(carry), carry - int(carry)
            for _ in range(n):
                for model, fb in (("m-a", self.fallback_a), ("m-b", 0.02)):
                    is_fb = rng.random() < fb
                    if is_fb and model == "m-a" and fb > 0.1 and self.first_degraded_at is None:
                        self.first_degraded_at = time.time()
                    self.aipulse.record(feature="chat", model=model, latency_ms=rng.lognormvariate(6, 0.4),
                                        outcome="fallback" if is_fb else "ok", fallback_depth=1 if is_fb else 0,
                                        input_tokens=100, output_tokens=50, cost_usd=0.0001)
                    self.sent += 1
            time.sleep(max(0.0, tick - (time.time() - started)))


@pytest.fixture
def e2e_rules(tmp_path):
    from aipulse_alerts.rules import DEFAULT_RULES_PATH, parse_rules

    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    for r in data["rules"]:
        if r["name"] == RULE:
            r["resolve_after"] = "10s"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    parse_rules(path.read_text())
    return path


def test_status_lists_alertmanager(stack, stack_settings):
    from aipulse_local.stack import status

    from aipulse_alerts import basic_auth
    from aipulse_local.alertmanager import healthy

    st = status(stack_settings)
    assert st["alertmanager"]["healthy"] and st["alertmanager"]["kind"] == "alertmanager", st
    # `aipulse status --json` gives the URL with the stack's credential; without it, 401
    bare, user, password = basic_auth.split(st["alertmanager"]["url"])
    assert bare == f"http://{st['alertmanager']['address']}" and user and password
    assert healthy(st["alertmanager"]["url"]) and not healthy(bare)


def test_fallback_surge_pages_through_alertmanager(stack, stack_settings, kafka_bootstrap, e2e_rules, tmp_path):
    import aipulse
    from aipulse_local.alertmanager import start as start_am
    from aipulse_local.process import stop_pid
    from aipulse_local.stack import start_worker, stop_component

    service = f"alerts-e2e-{uuid.uuid4().hex[:8]}"
    receiver = Receiver()
    am = start_am(stack_settings, home=tmp_path / "am", webhook_url=receiver.url, name="alertmanager-e2e",
                  record=False, page_group_interval="10s")
    worker_name = f"worker-alerts-{uuid.uuid4().hex[:6]}"
    traffic = None
    try:
        start_worker(stack_settings, name=worker_name, extra_env={
            "AIPULSE_WORKER_GROUP": f"alerts-e2e-{uuid.uuid4().hex[:6]}",
            "AIPULSE_DATABASE": "aipulse_alerts_e2e",
            "AIPULSE_ALERT_RULES": str(e2e_rules),
            "AIPULSE_ALERTMANAGER_URL": am["url"],   # carries the Alertmanager's credential
        })
        aipulse.init(kafka_bootstrap=kafka_bootstrap, service=service)
        traffic = Traffic(aipulse)
        traffic.start()

        time.sleep(STEADY_S)
        assert receiver.of(service) == [], f"notified during steady traffic: {receiver.of(service)}"

        traffic.fallback_a = 0.30
        wait_for(lambda: receiver.of(service, "firing"), timeout=DETECT_TIMEOUT_S,
                 what="the firing notification at the webhook")
        received_at, alert = receiver.of(service, "firing")[0]
        detection_s = received_at - traffic.first_degraded_at
        print(f"\nDETECTION TIME (first degraded event -> webhook delivery): {detection_s:.1f} s "
              f"[default windows/sustain/group_wait; {traffic.sent} events sent]")
        labels = alert["labels"]
        assert labels["alertname"] == RULE and labels["service"] == service
        assert labels["feature"] == "chat" and labels["model"] == "m-a" and labels["severity"] == "critical"
        assert alert["annotations"]["runbook"]
        assert detection_s < 30, f"detection took {detection_s:.1f}s"

        traffic.fallback_a = 0.02
        recovered_at = time.time()
        wait_for(lambda: receiver.of(service, "resolved"), timeout=RESOLVE_TIMEOUT_S,
                 what="the resolved notification at the webhook")
        print(f"RESOLVED notification {receiver.of(service, 'resolved')[0][0] - recovered_at:.1f} s after recovery")
        time.sleep(DUPLICATE_WATCH_S)
        firing = receiver.of(service, "firing")
        resolved = receiver.of(service, "resolved")
        assert len(firing) == 1, f"duplicate firing notifications: {firing}"
        assert len(resolved) == 1, f"duplicate resolved notifications: {resolved}"
        assert {a['labels']['alertname'] for _, a in receiver.of(service)} == {RULE}
    finally:
        if traffic is not None:
            traffic.stop_flag.set()
            traffic.join(5)
        aipulse.close()
        stop_component(stack_settings, worker_name)
        stop_pid(am["pid"])
        receiver.server.shutdown()

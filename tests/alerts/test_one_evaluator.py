"""One evaluator for the whole stream, on the real broker and the real ClickHouse endpoint.

Real workers (``aipulse worker`` processes of the local stack, own topic, group and database
each) post to a recorder that speaks Alertmanager's ``POST /api/v2/alerts`` and keeps every
alert the notifier sent, re-posts included.

- ``test_one_and_three_workers_raise_the_same_alerts``: the same degraded stream, sent at the
  same moments to a 1-worker and a 3-worker group (3 partitions each), must raise the same
  alerts (same labels; firing and resolving within one base window of each other). The rules
  are set so that only a whole-stream evaluator can fire them: each group's volume is 1.5x the
  rule's ``min_volume``, and the cost and per-user spend totals are 1.5x their thresholds
  (each worker's third stays under them).
- ``test_restarted_worker_resumes_a_firing_alert``: the only worker is killed (SIGKILL) while an
  alert fires and started again: no resolved notice and no second firing while the degradation
  lasts (every firing post carries the one start time), then one resolved notice.
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from aipulse.contract import Interaction
from aipulse_alerts.rules import MONTH_S, parse_rules
from fault.helpers import KafkaProducer_, TopicWorkers

from support import wait_for

pytestmark = pytest.mark.integration

WINDOW_S = 5                 # the base window of these workers (AIPULSE_WINDOW_S)
RULE_WINDOW_S = 20
TICK_S = 0.1
MA_PER_TICK = 2              # model m-a: 20 events/s -> 400 in a rule window
MB_PER_TICK = 1              # model m-b: 10 events/s, always healthy
WHALE_PER_TICK = 1           # one user, only while degraded: 10 events/s
MIN_VOLUME = 267             # 400 = 1.5 x MIN_VOLUME
BASE_COST = 0.001
DEGRADED_COST = 0.003
WHALE_COST = 0.0075          # 200 events per rule window: 1.5 USD = 1.5 x USER_LIMIT
USER_LIMIT = 1.0
# Service cost per rule window while degraded: 400 x 0.003 + 200 x 0.003 + 200 x 0.0075 = 3.3 USD
COST_LIMIT = 2.2 * MONTH_S / RULE_WINDOW_S       # 3.3 USD/window = 1.5 x this run-rate


def rules_yaml(min_volume: int = MIN_VOLUME) -> str:
    common = {"window": f"{RULE_WINDOW_S}s", "sustain": "0s", "resolve_after": "10s", "severity": "critical",
              "runbook": "test"}
    rules = [
        {"name": "fallback_high", "metric": "fallback_rate", "group_by": ["service", "feature", "model"],
         "comparison": ">", "threshold": 0.2, "min_volume": min_volume, **common},
        {"name": "cost_high", "metric": "cost_run_rate_usd_month", "group_by": ["service"],
         "comparison": ">", "threshold": COST_LIMIT, "min_volume": 0, **common},
        {"name": "user_spend_high", "metric": "user_spend_usd", "group_by": ["service", "user_id"],
         "comparison": ">", "threshold": USER_LIMIT, "min_volume": 0, **common},
    ]
    text = yaml.safe_dump({"version": 1, "rules": rules})
    parse_rules(text)
    return text


class Recorder:
    """Speaks Alertmanager's alert API: records (received_at, alert) of every POSTed alert."""

    def __init__(self):
        self.items: list[tuple[float, dict]] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.time()
                for a in body:
                    rec.items.append((now, a))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> dict[tuple, dict]:
        """label set -> {"firing": [(t, startsAt)], "resolved": [(t, startsAt)]} (re-posts included)."""
        out: dict[tuple, dict] = {}
        for t, a in list(self.items):
            key = tuple(sorted(a["labels"].items()))
            ends = datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")).timestamp()
            status = "resolved" if ends <= t + 1 else "firing"
            out.setdefault(key, {"firing": [], "resolved": []})[status].append((t, a["startsAt"]))
        return out


class Stream(threading.Thread):
    """The same interactions, at the same moments, to every topic; ``degraded`` switches the mix."""

    def __init__(self, bootstrap: str, topics: list[str], service: str):
        super().__init__(daemon=True)
        self.producer = KafkaProducer_(bootstrap)
        self.topics = topics
        self.service = service
        self.degraded = False
        self.stop_flag = threading.Event()
        self.sent = 0
        self.started_at = time.time()

    def _send(self, **fields) -> None:
        ev = Interaction(event_id=uuid.uuid4().hex, ts=datetime.now(timezone.utc), service=self.service,
                         feature="chat", latency_ms=200.0, **fields)
        value = ev.model_dump_json(exclude_none=True).encode()
        for topic in self.topics:
            self.producer.send(topic, key=ev.event_id.encode(), value=value)
        self.sent += 1

    def run(self):
        rng = random.Random(5)
        self.started_at = next_at = time.time()
        while not self.stop_flag.is_set():
            bad = self.degraded
            cost = DEGRADED_COST if bad else BASE_COST
            for _ in range(MA_PER_TICK):
                fb = rng.random() < (0.4 if bad else 0.02)
                self._send(model="m-a", outcome="fallback" if fb else "ok", fallback_depth=1 if fb else 0,
                           cost_usd=cost)
            for _ in range(MB_PER_TICK):
                self._send(model="m-b", cost_usd=cost)
            if bad:
                for _ in range(WHALE_PER_TICK):
                    self._send(model="m-b", user_id="whale", cost_usd=WHALE_COST)
            self.producer.flush(5)
            next_at += TICK_S
            time.sleep(max(0.0, next_at - time.time()))

    def close(self):
        self.stop_flag.set()
        self.join(5)
        self.producer.close()


def _group(stack_settings, kafka_bootstrap, rules_path, recorder, workers: int) -> TopicWorkers:
    group = TopicWorkers(stack_settings, kafka_bootstrap, partitions=3, extra_env={
        "AIPULSE_WINDOW_S": str(WINDOW_S), "AIPULSE_ALERT_RULES": str(rules_path),
        "AIPULSE_ALERTMANAGER_URL": recorder.url})
    group.start()
    for i in range(1, workers):
        group.start(f"w{i + 1}")
    return group


def _first(posts: list[tuple[float, str]]) -> float | None:
    return posts[0][0] if posts else None


def test_one_and_three_workers_raise_the_same_alerts(stack, stack_settings, kafka_bootstrap, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml())
    service = f"ev-{uuid.uuid4().hex[:8]}"
    rec1, rec3 = Recorder(), Recorder()
    one = three = stream = None
    try:
        one = _group(stack_settings, kafka_bootstrap, rules, rec1, 1)
        three = _group(stack_settings, kafka_bootstrap, rules, rec3, 3)
        stream = Stream(kafka_bootstrap, [one.topic, three.topic], service)
        stream.start()
        time.sleep(25)                                   # healthy: fills the rule windows
        assert not rec1.items and not rec3.items, (rec1.items, rec3.items)
        stream.degraded = True
        time.sleep(30)
        stream.degraded = False
        expected = {"fallback_high", "cost_high", "user_spend_high"}

        def all_resolved():
            for rec in (rec1, rec3):
                got = rec.alerts()
                names = {dict(k)["alertname"] for k, v in got.items() if v["resolved"]}
                if names != expected:
                    return False
            return True

        wait_for(all_resolved, timeout=75, what="every alert fired and resolved in both groups")
        got1, got3 = rec1.alerts(), rec3.alerts()
        assert set(got1) == set(got3), f"different alerts:\n1 worker: {set(got1)}\n3 workers: {set(got3)}"
        assert {dict(k)["alertname"] for k in got1} == expected
        for key in got1:
            labels = dict(key)
            for status in ("firing", "resolved"):
                t1, t3 = _first(got1[key][status]), _first(got3[key][status])
                assert t1 is not None and t3 is not None, \
                    f"{labels['alertname']}: no {status} post\n1 worker: {got1[key]}\n3 workers: {got3[key]}"
                print(f"\n{labels['alertname']:16s} {status:8s} at 1 worker {t1 - stream.started_at:6.1f}s, "
                      f"3 workers {t3 - stream.started_at:6.1f}s (from the stream's start)")
                assert abs(t1 - t3) <= WINDOW_S, f"{labels['alertname']} {status}: {t1:.1f} vs {t3:.1f}"
            for got in (got1, got3):
                # one alert: one start time across every firing re-post, one resolved notice
                assert len({s for _, s in got[key]["firing"]}) == 1, got[key]
                assert len(got[key]["resolved"]) == 1, got[key]
        assert dict(next(k for k in got1 if dict(k)["alertname"] == "user_spend_high"))["user_id"] == "whale"
        assert dict(next(k for k in got1 if dict(k)["alertname"] == "fallback_high"))["model"] == "m-a"
    finally:
        if stream is not None:
            stream.close()
        for g in (one, three):
            if g is not None:
                g.stop()
        rec1.server.shutdown()
        rec3.server.shutdown()


def test_restarted_worker_resumes_a_firing_alert(stack, stack_settings, kafka_bootstrap, ch, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(min_volume=50))
    service = f"evr-{uuid.uuid4().hex[:8]}"
    rec = Recorder()
    group = stream = None
    try:
        group = _group(stack_settings, kafka_bootstrap, rules, rec, 1)
        stream = Stream(kafka_bootstrap, [group.topic], service)
        stream.start()
        time.sleep(10)
        stream.degraded = True

        def fallback_alert():
            return next((v for k, v in rec.alerts().items() if dict(k)["alertname"] == "fallback_high"), None)

        wait_for(lambda: fallback_alert() and fallback_alert()["firing"], timeout=60, what="the firing alert")
        wait_for(lambda: ch.query(f"SELECT count() FROM {group.database}.alerts WHERE rule = 'fallback_high' "
                                  "AND status = 'firing'").result_rows[0][0] >= 1,
                 timeout=20, what="the firing row in the alerts table")
        started = fallback_alert()["firing"][0][1]
        group.kill()                       # SIGKILL: no goodbye, no flush
        killed_at = time.time()
        group.start()
        time.sleep(30)                     # still degraded: the alert must just go on firing
        alert = fallback_alert()
        assert alert["resolved"] == [], f"resolved after the restart: {alert}"
        assert {s for _, s in alert["firing"]} == {started}, f"a second firing alert: {alert['firing']}"
        reposts = [t for t, _ in alert["firing"] if t > killed_at]
        assert reposts, "the restarted evaluator did not take the firing alert over"
        stream.degraded = False
        wait_for(lambda: fallback_alert()["resolved"], timeout=60, what="the resolved notice after recovery")
        time.sleep(3)
        alert = fallback_alert()
        assert len(alert["resolved"]) == 1 and alert["resolved"][0][1] == started, alert
    finally:
        if stream is not None:
            stream.close()
        if group is not None:
            group.stop()
        rec.server.shutdown()

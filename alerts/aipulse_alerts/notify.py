"""Deliver alert state changes: Alertmanager v2 API, the ``aipulse.alerts`` topic, ClickHouse.

    n = Notifier(alertmanager_url="http://127.0.0.1:9093", kafka_bootstrap="127.0.0.1:9092",
                 topic="aipulse.alerts", clickhouse=insert_alert_rows)
    n.send(alerts)       # state changes from Detector.tick()
    n.resend_due()       # call periodically: keeps firing alerts alive in Alertmanager

An Alertmanager behind basic auth (``--web.config.file``) is given as
``http://user:password@host:9093``: the credential goes in an ``Authorization: Basic`` header
(:mod:`aipulse_alerts.basic_auth`) and is replaced by ``***`` in every logged URL.

Alertmanager protocol (as Prometheus speaks it): a firing alert is posted with ``endsAt`` a
few minutes ahead (``ALERT_TTL_S``) and re-posted every ``RESEND_S`` while it fires, so that
an alert whose sender died resolves by itself; a resolved alert is posted once more with
``endsAt`` = the time it resolved. Alertmanager identifies an alert by its label set, so
re-posts never produce a second notification; routing, grouping, silences and delivery are
Alertmanager's (config: :mod:`aipulse_alerts.amconfig`).

Every sink is best effort and independent: a failed post is kept and retried at the next
call (bounded by ``MAX_PENDING``) and never blocks the worker's batch loop, which only
hands alerts to the hook's thread (:mod:`aipulse_alerts.hook`).
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Callable

from . import basic_auth
from .detector import Alert

log = logging.getLogger("aipulse.alerts")

ALERTS_PATH = "/api/v2/alerts"
ALERT_TTL_S = 300          # endsAt of a firing alert: resolved by Alertmanager if we go silent
RESEND_S = 60              # re-post firing alerts this often (well under ALERT_TTL_S)
POST_TIMEOUT_S = 5.0
MAX_PENDING = 10_000       # undelivered posts kept for retry at most
GENERATOR_URL = "http://aipulse.local/alerts"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def am_payload(alert: Alert, now: float) -> dict:
    """One element of the Alertmanager v2 ``POST /api/v2/alerts`` body."""
    ends = alert.ends_at if alert.status == "resolved" else now + ALERT_TTL_S
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": _iso(alert.starts_at),
        "endsAt": _iso(ends),
        "generatorURL": GENERATOR_URL,
    }


def event_payload(alert: Alert, now: float) -> dict:
    """The JSON published to the alerts topic (and the ClickHouse row, see :func:`ch_row`)."""
    return {
        "alert_id": alert.alert_id, "rule": alert.rule, "status": alert.status,
        "labels": alert.labels, "annotations": alert.annotations, "group": alert.group,
        "value": alert.value, "threshold": alert.threshold, "baseline": alert.baseline,
        "starts_at": alert.starts_at, "ends_at": alert.ends_at, "at": now,
    }


def ch_row(alert: Alert, now: float) -> dict:
    """A row of the ``alerts`` table (migration 003)."""
    g = alert.group
    return {
        "alert_id": alert.alert_id, "rule": alert.rule, "status": alert.status,
        "severity": alert.labels.get("severity", ""),
        "service": g.get("service", ""), "feature": g.get("feature", ""),
        "model": g.get("model", ""), "variant": g.get("variant", ""),
        "group_key": json.dumps(g, sort_keys=True), "labels": dict(alert.labels),
        "summary": alert.annotations.get("summary", ""), "runbook": alert.annotations.get("runbook", ""),
        "value": float(alert.value) if alert.value is not None else float("nan"),
        "threshold": alert.threshold, "baseline": alert.baseline,
        "starts_at": datetime.fromtimestamp(alert.starts_at, timezone.utc),
        "ends_at": datetime.fromtimestamp(alert.ends_at, timezone.utc) if alert.ends_at else None,
        "at": datetime.fromtimestamp(now, timezone.utc),
    }


def post_alertmanager(base_url: str, payload: list[dict], timeout: float = POST_TIMEOUT_S) -> None:
    """POST alerts to Alertmanager; raises on a non-2xx answer or a network error.

    ``base_url`` may carry a credential (``http://user:password@host:9093``); it is sent as
    basic auth, never in the request line, and no error message names it.
    """
    req = basic_auth.request(base_url.rstrip("/") + ALERTS_PATH, data=json.dumps(payload).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if not 200 <= r.status < 300:
                raise OSError(f"Alertmanager answered {r.status}")
    except urllib.error.HTTPError as err:
        hint = (": check the user and password in AIPULSE_ALERTMANAGER_URL" if err.code == 401 else "")
        raise OSError(f"Alertmanager answered {err.code} {err.reason}{hint}") from None


class Notifier:
    """Fan-out of alert state changes. Not thread-safe: one thread (the hook's) calls it."""

    def __init__(self, alertmanager_url: str | Callable[[], str | None] | None = None, *,
                 kafka_bootstrap: str | None = None, topic: str = "aipulse.alerts",
                 clickhouse: Callable[[list[dict]], None] | None = None,
                 clock: Callable[[], float] = time.time, kafka_options: dict | None = None):
        self._am_url = alertmanager_url
        self._bootstrap = kafka_bootstrap
        self._kafka_options = dict(kafka_options or {})  # TLS/SASL: KafkaSecurity.client_options()
        self._topic = topic
        self._clickhouse = clickhouse
        self._clock = clock
        self._producer = None
        self.active: dict[str, Alert] = {}          # alert_id -> firing alert
        self._last_post: dict[str, float] = {}
        self._pending_am: list[Alert] = []
        self._pending_kafka: list[tuple[Alert, float]] = []
        self._pending_ch: list[tuple[Alert, float]] = []
        self.sent = {"alertmanager": 0, "kafka": 0, "clickhouse": 0}
        self.failures = {"alertmanager": 0, "kafka": 0, "clickhouse": 0}

    def am_url(self) -> str | None:
        u = self._am_url
        return u() if callable(u) else u

    # -- public --------------------------------------------------------------------------
    def send(self, alerts: list[Alert]) -> None:
        now = self._clock()
        for a in alerts:
            if a.status == "firing":
                self.active[a.alert_id] = a
            else:
                self.active.pop(a.alert_id, None)
                self._last_post.pop(a.alert_id, None)
            log.warning("alert %s %s %s value=%s", a.status, a.rule, a.group, a.value)
        self._pending_am.extend(alerts)
        self._pending_kafka.extend((a, now) for a in alerts)
        self._pending_ch.extend((a, now) for a in alerts)
        self.flush()

    def resend_due(self) -> None:
        now = self._clock()
        due = [a for i, a in self.active.items() if now - self._last_post.get(i, 0) >= RESEND_S]
        if due:
            self._pending_am.extend(due)
        self.flush()

    def flush(self) -> None:
        self._flush_am()
        self._flush_kafka()
        self._flush_ch()

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception:
                pass
            self._producer = None

    # -- sinks ---------------------------------------------------------------------------
    def _flush_am(self) -> None:
        if not self._pending_am:
            return
        url = self.am_url()
        if not url:
            self._trim(self._pending_am)
            return
        now = self._clock()
        # The latest state per alert id wins (a firing re-post after its resolve would revive it).
        latest: dict[str, Alert] = {}
        for a in self._pending_am:
            latest[a.alert_id] = a
        batch = list(latest.values())
        try:
            post_alertmanager(url, [am_payload(a, now) for a in batch])
        except Exception as err:
            self.failures["alertmanager"] += 1
            log.warning("posting %d alert(s) to Alertmanager at %s failed (will retry): %s", len(batch),
                        basic_auth.redact(url), err)
            self._pending_am = batch
            self._trim(self._pending_am)
            return
        self._pending_am = []
        self.sent["alertmanager"] += len(batch)
        for a in batch:
            if a.status == "firing":
                self._last_post[a.alert_id] = now

    def _flush_kafka(self) -> None:
        if not self._pending_kafka or not self._bootstrap:
            self._trim(self._pending_kafka)
            return
        try:
            if self._producer is None:
                from kafka import KafkaProducer

                self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, acks=1, linger_ms=0,
                                               request_timeout_ms=5000, max_block_ms=5000, **self._kafka_options)
            futures = [self._producer.send(self._topic, key=a.alert_id.encode(),
                                           value=json.dumps(event_payload(a, at)).encode())
                       for a, at in self._pending_kafka]
            for f in futures:
                f.get(timeout=POST_TIMEOUT_S)
        except Exception as err:
            self.failures["kafka"] += 1
            log.warning("publishing alerts to %s failed (will retry): %s", self._topic, err)
            self._trim(self._pending_kafka)
            return
        self.sent["kafka"] += len(self._pending_kafka)
        self._pending_kafka = []

    def _flush_ch(self) -> None:
        if not self._pending_ch or self._clickhouse is None:
            self._trim(self._pending_ch)
            return
        try:
            self._clickhouse([ch_row(a, at) for a, at in self._pending_ch])
        except Exception as err:
            self.failures["clickhouse"] += 1
            log.warning("writing alerts to ClickHouse failed (will retry): %s", err)
            self._trim(self._pending_ch)
            return
        self.sent["clickhouse"] += len(self._pending_ch)
        self._pending_ch = []

    @staticmethod
    def _trim(items: list) -> None:
        if len(items) > MAX_PENDING:
            del items[: len(items) - MAX_PENDING]

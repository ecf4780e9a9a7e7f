"""Deliver alert state changes: Alertmanager v2 API, the ``aipulse.alerts`` topic, ClickHouse.

    n = Notifier(alertmanager_url="http://127.0.0.1:9093", kafka_bootstrap="127.0.0.1:9092",
                 topic="aipulse.alerts", clickhouse=insert_alert_rows)
    n.start()            # inside the evaluator's event loop: one delivery task per sink
    n.send(alerts)       # state changes from Detector.tick(); only enqueues
    n.resend_due()       # call periodically: keeps firing alerts alive in Alertmanager
    await n.flush(10)    # on stop: deliver what is pending, within a deadline
    n.close()

Without ``start()`` (a script, a test) ``send()`` delivers before it returns, with the same
retry bounded by ``FLUSH_TIMEOUT_S``.

An Alertmanager behind basic auth (``--web.config.file``) is given as
``http://user:password@host:9093``: the credential goes in an ``Authorization: Basic`` header
(:mod:`aipulse_alerts.basic_auth`) and is replaced by ``***`` in every logged URL.

Alertmanager protocol (as Prometheus speaks it): a firing alert is posted with ``endsAt`` a
few minutes ahead (``ALERT_TTL_S``) and re-posted every ``RESEND_S`` while it fires, so that
an alert whose sender died resolves by itself; a resolved alert is posted once more with
``endsAt`` = the time it resolved. Alertmanager identifies an alert by its label set, so
re-posts never produce a second notification; routing, grouping, silences and delivery are
Alertmanager's (config: :mod:`aipulse_alerts.amconfig`).

Delivery: every sink is independent, and retried with the stream's one backoff
(:func:`aipulse_stream.sinks.retry.retry`, jittered, capped at ``RETRY_MAX_BACKOFF_S``) by its
own task, so a down Alertmanager delays neither evaluation nor the other sinks. What waits is
bounded (``MAX_PENDING`` per sink, oldest dropped and counted).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Callable

from aipulse_stream.sinks.retry import retry
from kafka import KafkaProducer

from . import basic_auth
from .alert import Alert

log = logging.getLogger("aipulse.alerts")

ALERTS_PATH = "/api/v2/alerts"
ALERT_TTL_S = 300          # endsAt of a firing alert: resolved by Alertmanager if we go silent
RESEND_S = 60              # re-post firing alerts this often (well under ALERT_TTL_S)
POST_TIMEOUT_S = 5.0
MAX_PENDING = 10_000       # undelivered alerts kept per sink at most
RETRY_MAX_BACKOFF_S = 10.0
FLUSH_TIMEOUT_S = 10.0     # how long a stop (or a loop-less send) waits for delivery
GENERATOR_URL = "http://aipulse.local/alerts"
SINKS = ("alertmanager", "kafka", "clickhouse")


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
    """Fan-out of alert state changes. Called from one thread (the evaluator's event loop)."""

    def __init__(self, alertmanager_url: str | Callable[[], str | None] | None = None, *,
                 kafka_bootstrap: str | None = None, topic: str = "aipulse.alerts",
                 clickhouse: Callable[[list[dict]], None] | None = None,
                 clock: Callable[[], float] = time.time, kafka_options: dict | None = None,
                 flush_timeout_s: float = FLUSH_TIMEOUT_S):
        self.flush_timeout_s = flush_timeout_s
        self._am_url = alertmanager_url
        self._bootstrap = kafka_bootstrap
        self._kafka_options = dict(kafka_options or {})  # TLS/SASL: KafkaSecurity.client_options()
        self._topic = topic
        self._clickhouse = clickhouse
        self._clock = clock
        self._producer = None
        self.active: dict[str, Alert] = {}          # alert_id -> firing alert
        self._last_post: dict[str, float] = {}
        # sink -> [(alert, at)] waiting for delivery
        self._pending: dict[str, list[tuple[Alert, float]]] = {s: [] for s in SINKS}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._busy = {s: False for s in SINKS}     # a batch of the sink is being delivered
        self.sent = {s: 0 for s in SINKS}
        self.failures = {s: 0 for s in SINKS}
        self.dropped = {s: 0 for s in SINKS}

    def am_url(self) -> str | None:
        u = self._am_url
        return u() if callable(u) else u

    def _enabled(self, sink: str) -> bool:
        if sink == "kafka":
            return bool(self._bootstrap)
        if sink == "clickhouse":
            return self._clickhouse is not None
        return self._am_url is not None

    # -- public --------------------------------------------------------------------------
    def adopt(self, alerts: list[Alert], posted_at: float | None = None) -> None:
        """Take over alerts already firing (a restarted evaluator): re-posted, never re-sent."""
        for a in alerts:
            self.active[a.alert_id] = a
            self._last_post[a.alert_id] = self._clock() - RESEND_S if posted_at is None else posted_at

    def send(self, alerts: list[Alert]) -> None:
        now = self._clock()
        for a in alerts:
            if a.status == "firing":
                self.active[a.alert_id] = a
                self._last_post[a.alert_id] = now
            else:
                self.active.pop(a.alert_id, None)
                self._last_post.pop(a.alert_id, None)
            log.warning("alert %s %s %s value=%s", a.status, a.rule, a.group, a.value)
        for sink in SINKS:
            if self._enabled(sink):
                self._enqueue(sink, [(a, now) for a in alerts])
        if not self._tasks:  # no delivery tasks: deliver now (bounded), like a flush
            asyncio.run(self.flush(self.flush_timeout_s))

    def resend_due(self) -> None:
        now = self._clock()
        due = [a for i, a in self.active.items() if now - self._last_post.get(i, 0) >= RESEND_S]
        for a in due:
            self._last_post[a.alert_id] = now
        if due and self._enabled("alertmanager"):
            self._enqueue("alertmanager", [(a, now) for a in due])

    def start(self) -> None:
        """Start one delivery task per sink on the running event loop."""
        for sink in SINKS:
            self._wake[sink] = asyncio.Event()
            self._tasks.append(asyncio.get_running_loop().create_task(self._deliver_forever(sink)))
            if self._pending[sink]:
                self._wake[sink].set()

    async def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Deliver everything pending (retrying) within ``timeout``; True when nothing is left."""
        deadline = time.monotonic() + timeout
        if self._tasks:
            while any(self._pending.values()) or any(self._busy.values()):
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.05)
        else:
            for sink in SINKS:
                left = deadline - time.monotonic()
                if not self._pending[sink] or left <= 0:
                    continue
                try:
                    await asyncio.wait_for(self._deliver_pending(sink), left)
                except asyncio.TimeoutError:
                    pass
        left = {s: len(p) for s, p in self._pending.items() if p}
        if left:
            log.warning("alert delivery: %s left undelivered after %.0fs", left, timeout)
        return not left

    async def stop(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Flush within ``timeout``, then stop the delivery tasks and close the producer."""
        await self.flush(timeout)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception:
                pass
            self._producer = None

    # -- delivery ------------------------------------------------------------------------
    def _enqueue(self, sink: str, items: list[tuple[Alert, float]]) -> None:
        if not items:
            return
        pending = self._pending[sink]
        pending.extend(items)
        if len(pending) > MAX_PENDING:
            self.dropped[sink] += len(pending) - MAX_PENDING
            del pending[: len(pending) - MAX_PENDING]
        if sink in self._wake:
            self._wake[sink].set()

    async def _deliver_forever(self, sink: str) -> None:
        while True:
            await self._wake[sink].wait()
            self._wake[sink].clear()
            self._busy[sink] = True
            try:
                while self._pending[sink]:
                    await self._deliver_pending(sink)
            finally:
                self._busy[sink] = False

    async def _deliver_pending(self, sink: str) -> None:
        """Deliver the sink's pending items as one batch, retried until it succeeds."""
        batch = self._pending[sink]
        self._pending[sink] = []
        write = {"alertmanager": self._write_am, "kafka": self._write_kafka, "clickhouse": self._write_ch}[sink]
        if sink == "alertmanager":
            # The latest state per alert id wins (a firing re-post after its resolve would revive it).
            latest: dict[str, tuple[Alert, float]] = {}
            for a, at in batch:
                latest[a.alert_id] = (a, at)
            batch = list(latest.values())

        def failed(_err):
            self.failures[sink] += 1

        try:
            await retry(lambda: asyncio.to_thread(write, batch), f"deliver {len(batch)} alert(s) to {sink}",
                        RETRY_MAX_BACKOFF_S, on_failure=failed)
        except BaseException:
            self._pending[sink][:0] = batch  # cancelled (stop deadline): keep them for the count
            raise
        self.sent[sink] += len(batch)

    def _write_am(self, batch: list[tuple[Alert, float]]) -> None:
        url = self.am_url()
        if not url:
            raise OSError("the Alertmanager address is not known yet")
        now = self._clock()
        try:
            post_alertmanager(url, [am_payload(a, now) for a, _ in batch])
        except Exception as err:  # the URL may carry a credential: never in the message
            raise OSError(f"posting to Alertmanager at {basic_auth.redact(url)}: {err}") from None

    def _write_kafka(self, batch: list[tuple[Alert, float]]) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, acks=1, linger_ms=0,
                                           request_timeout_ms=5000, max_block_ms=5000, **self._kafka_options)
        futures = [self._producer.send(self._topic, key=a.alert_id.encode(),
                                       value=json.dumps(event_payload(a, at)).encode()) for a, at in batch]
        for f in futures:
            f.get(timeout=POST_TIMEOUT_S)

    def _write_ch(self, batch: list[tuple[Alert, float]]) -> None:
        self._clickhouse([ch_row(a, at) for a, at in batch])

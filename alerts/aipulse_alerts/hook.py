"""The detector inside the worker: one call per batch, evaluation and delivery on a thread.

The metrics stage (stream/aipulse_stream/metrics_stage.py) does::

    self.alerts = start_alerts(settings)          # None when alerting is off
    ...
    rows = self.agg.drain_rows()
    if self.alerts is not None:
        self.alerts.observe(rows, valid)           # stores only; never blocks on I/O

A daemon thread ticks every ``TICK_S``: it evaluates newly closed windows and hands state
changes to the :class:`~aipulse_alerts.notify.Notifier` (Alertmanager, Kafka, ClickHouse), so
slow or failing sinks never hold the batch loop. A lock serialises the two threads' access
to the detector.

Configuration: rules from ``settings.alert_rules`` (AIPULSE_ALERT_RULES) or the packaged aipulse_alerts/rules.yaml; Alertmanager from
``settings.alertmanager_url`` (AIPULSE_ALERTMANAGER_URL, ``http://user:password@host:9093``
when it requires basic auth; the local stack hands the worker its own); ``settings.alerts``
(``AIPULSE_ALERTS=off``) disables the detector.
"""
from __future__ import annotations

import logging
import threading

from .detector import Detector
from .notify import Notifier
from .rules import RulesError, load_rules

log = logging.getLogger("aipulse.alerts")

TICK_S = 1.0                 # evaluation cadence (a window closes every settings.window_s)
DISABLE_ENV = "AIPULSE_ALERTS"


class AlertHook:
    def __init__(self, settings, detector: Detector, notifier: Notifier, tick_s: float = TICK_S):
        self.settings = settings
        self.detector = detector
        self.notifier = notifier
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tick_s = tick_s
        self._thread = threading.Thread(target=self._run, name="aipulse-alerts", daemon=True)

    def start(self) -> "AlertHook":
        self._thread.start()
        return self

    def observe(self, rows: list[dict], events=None) -> None:
        """Called by the batch loop with the drained rows and the batch's valid events."""
        with self._lock:
            self.detector.observe(rows, events)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.notifier.close()

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                with self._lock:
                    alerts = self.detector.tick()
                self.notifier.send(alerts) if alerts else self.notifier.resend_due()
            except Exception:  # a bug here must not kill alerting for good
                log.exception("alert evaluation failed")


def _clickhouse_writer(settings):
    holder = {}

    def insert(rows: list[dict]) -> None:
        if "client" not in holder:
            from aipulse_stream.storage.clickhouse import connect

            holder["client"] = connect(settings)
        cols = list(rows[0])
        holder["client"].insert(f"{settings.database}.alerts", [[r[c] for c in cols] for r in rows],
                                column_names=cols)

    return insert


def start_alerts(settings) -> AlertHook | None:
    """Build and start the hook from settings; None (with a log line) when off or misconfigured."""
    if not settings.alerts:
        log.info("alerting is off (%s)", DISABLE_ENV)
        return None
    try:
        rules = load_rules(settings.alert_rules)
        detector = Detector(rules, window_s=settings.window_s)
    except (RulesError, ValueError) as err:
        log.error("alerting disabled: %s", err)
        return None
    notifier = Notifier(settings.alertmanager_url, kafka_bootstrap=settings.kafka_bootstrap,
                        topic=settings.alerts_topic, clickhouse=_clickhouse_writer(settings),
                        kafka_options=settings.kafka_security.client_options())
    log.info("alerting: %d rules, base window %ss", len(detector.rules), settings.window_s)
    return AlertHook(settings, detector, notifier).start()

"""One evaluator for the whole stream, however many workers run.

Every worker starts one; Kafka's group protocol (:mod:`.election`) lets exactly one of them
evaluate at a time. The leader reads what every worker stored in ClickHouse, so every rule
sees all partitions::

    ev = Evaluator(settings, load_rules(), notifier, election)
    ev.start()     # a thread with its own event loop; cheap when not the leader
    ...
    ev.stop()      # stops evaluating, delivers pending notifications (bounded), leaves the group

Every ``TICK_S`` the leader:

1. reads the base windows rewritten since the last tick (``metrics_window.written_at``), merged
   over partitions and blocks by ``metrics_window FINAL`` (:mod:`.reading`);
2. reads each partition's stored progress (``partition_progress``) and the topic's end offsets
   from Kafka: a partition is complete up to its event-time watermark, or up to now when no
   offset is left to read. Windows are evaluated only up to the least complete partition, so
   a stalled partition (or ClickHouse down: nothing is read) holds the state; it never
   resolves for lack of input. Pipeline lag is measured on the same data: for a partition with
   unread offsets, now minus the newest event time stored from it (a replay rewrites old
   offsets, which never lowers that watermark, so a restart does not look like lag);
3. evaluates the closed, complete windows (:class:`~aipulse_alerts.detector.Detector`) and
   hands state changes to the :class:`~aipulse_alerts.notify.Notifier`.

When it becomes leader (start, failover, restart) it rebuilds its windows from ClickHouse
(the rules' whole span: baselines included) and resumes the alerts the ``alerts`` table has as
firing: they stay firing, are not sent again, and resolve only after a full quiet period.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from aipulse_stream.storage.clickhouse import connect
from kafka import KafkaConsumer, TopicPartition

from .detector import Detector
from .election import Election
from .notify import FLUSH_TIMEOUT_S, Notifier
from .reading import StoreReader
from .rules import Metric, RuleSet, load_rules

log = logging.getLogger("aipulse.alerts")

TICK_S = 0.5                # evaluation cadence: a closed window is seen within this (plus the read)
SINCE_MARGIN_MS = 5_000     # re-read windows written this long before the last read (inserts in flight)
IDLE_TAIL_S = 30.0          # unread offsets unchanged this long (a tail of dead letters): complete
LOG_EVERY_S = 30.0


class Evaluator:
    def __init__(self, settings, rules: RuleSet, notifier: Notifier, election, *, connect, tick_s: float = TICK_S,
                 clock=time.time):
        self.settings = settings
        self.rules = rules
        self.notifier = notifier
        self.election = election
        self._connect = connect            # () -> clickhouse-connect client
        self._tick_s = tick_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aipulse-evaluator", daemon=True)
        # One thread owns the ClickHouse client, the Kafka offsets client and the detector.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aipulse-eval")
        self.detector: Detector | None = None
        self._reader: StoreReader | None = None
        self._offsets: KafkaConsumer | None = None
        self._since_ms = 0
        self._tails: dict[int, tuple[int, int, float]] = {}   # partition -> (end, stored, since)
        self._last_log = 0.0
        self.ticks = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Evaluator":
        self.election.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop evaluating, flush notifications (``FLUSH_TIMEOUT_S``), leave the election."""
        self._stop.set()
        self._thread.join(timeout=FLUSH_TIMEOUT_S + 10)
        self.election.stop()
        self._pool.shutdown(wait=False)
        if self._offsets is not None:
            try:
                self._offsets.close()
            except Exception:
                pass

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.notifier.start()
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    alerts = await loop.run_in_executor(self._pool, self._step)
                    if alerts:
                        self.notifier.send(alerts)
                    self.notifier.resend_due()
                except Exception as err:  # ClickHouse or Kafka unreachable: hold, try again
                    self._warn(f"alert evaluation held: {err}")
                await asyncio.sleep(max(0.05, self._tick_s - (time.monotonic() - started)))
        finally:
            await self.notifier.stop(FLUSH_TIMEOUT_S)

    def _warn(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.warning("%s", msg.strip().splitlines()[0][:300] if msg.strip() else msg)

    # -- one tick (on the evaluator's thread) ------------------------------------------------
    def _step(self) -> list:
        if not self.election.is_leader():
            if self.detector is not None:
                log.warning("alert evaluator: handing over (%d alert(s) firing)", len(self.detector.firing()))
                self.detector = None
                self.notifier.active.clear()  # the next leader re-posts them
            return []
        if self.detector is None:
            self._take_over()
            return []
        return self._evaluate()

    def _client_reader(self) -> StoreReader:
        if self._reader is None:
            s = self.settings
            self._reader = StoreReader(self._connect(), s.database, s.topic, s.window_s)
        return self._reader

    def _take_over(self) -> None:
        """Become the evaluator: windows and firing alerts rebuilt from ClickHouse."""
        reader = self._client_reader()
        det = Detector(self.rules, self.settings.window_s, clock=self._clock)
        det.set_spend_source(lambda a, b: reader.user_spend(a, b, self._spend_floor(det)))
        now = self._clock()
        server_now = reader.server_now_ms()
        horizon = det.store.fold_horizon(now)
        oldest = int(now * 1000) - det.store.keep_ms
        det.store.load_chunks(reader.window_rows(oldest, horizon, sketches=False, chunk_s=det.store.chunk_ms // 1000))
        det.replace(reader.window_rows(horizon, int(now * 1000) + det.window_s * 1000), now)
        resumed = det.restore(reader.firing_alerts(), now)
        self._since_ms = server_now - SINCE_MARGIN_MS
        self.detector = det
        self.notifier.adopt(resumed)
        log.warning("alert evaluator: %d rules over all partitions of %s; %d firing alert(s) resumed",
                 len(det.rules), self.settings.topic, len(resumed))

    @staticmethod
    def _spend_floor(det: Detector) -> float:
        # Users below every spend threshold cannot breach: do not read them (cardinality).
        return min((min([r.threshold, *(o.threshold for o in r.threshold_overrides)]) for r in det.rules
                    if r.metric == Metric.user_spend_usd), default=0.0) * 0.5

    def _evaluate(self) -> list:
        det, reader = self.detector, self._client_reader()
        now = self._clock()
        # Progress first, rows second: a worker inserts a batch's rows before its progress, so
        # every row behind the progress read here is in the rows read next.
        ready_ms, lag_s = self._completeness(reader.progress(), now)
        server_now = reader.server_now_ms()
        horizon = det.store.fold_horizon(now)
        touched = reader.touched_windows(self._since_ms, horizon)
        if touched:
            det.replace(reader.window_rows(windows=touched), now)
        self._since_ms = server_now - SINCE_MARGIN_MS
        if lag_s is not None:
            det.add_lag(lag_s, now)
        self.ticks += 1
        return det.tick(now, ready_ms=ready_ms)

    def _end_offsets(self) -> dict[int, int]:
        if self._offsets is None:
            s = self.settings
            self._offsets = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False,
                                          client_id="aipulse-evaluator", **s.kafka_security.client_options())
        parts = self._offsets.partitions_for_topic(self.settings.topic) or set()
        tps = [TopicPartition(self.settings.topic, p) for p in sorted(parts)]
        return {tp.partition: off for tp, off in self._offsets.end_offsets(tps).items()} if tps else {}

    def _completeness(self, progress: dict, now: float) -> tuple[int, float | None]:
        """(complete up to, ms; pipeline lag, s) over every partition of the topic."""
        now_ms = int(now * 1000)
        ready = now_ms
        lag = 0.0
        for p, end in self._end_offsets().items():
            prog = progress.get(p)
            stored = prog.stored if prog is not None else -1
            if end - 1 <= stored:
                self._tails.pop(p, None)
                continue  # nothing left to read: complete up to now
            tail = self._tails.get(p)
            if tail is None or tail[:2] != (end, stored):
                self._tails[p] = tail = (end, stored, now)
            if now - tail[2] >= IDLE_TAIL_S:
                continue  # offsets that never count (dead letters, another kind): complete
            wm = prog.watermark_ms if prog is not None else 0
            ready = min(ready, wm)
            if wm:
                lag = max(lag, now - wm / 1000)
        return ready, lag


def build_evaluator(settings, alertmanager_url=None) -> Evaluator:
    """The evaluator of one worker, from settings (not started).

    ``alertmanager_url``: a URL (``http://user:password@host:9093`` when it needs basic auth), a
    callable giving it once known, or None for ``settings.alertmanager_url``. Rules come from
    ``settings.alert_rules`` (AIPULSE_ALERT_RULES) or the packaged rules.yaml; a bad rule file
    raises RulesError. ``settings.alerts`` (AIPULSE_ALERTS=off) is the caller's to check.
    """
    rules = load_rules(settings.alert_rules)
    Detector(rules, settings.window_s)  # windows not multiples of the base window: ValueError now
    holder = {}

    def insert(rows: list[dict]) -> None:  # the alerts table, on the notifier's delivery thread
        if "client" not in holder:
            holder["client"] = connect(settings)
        cols = list(rows[0])
        holder["client"].insert(f"{settings.database}.alerts", [[r[c] for c in cols] for r in rows],
                                column_names=cols)

    notifier = Notifier(alertmanager_url or settings.alertmanager_url, kafka_bootstrap=settings.kafka_bootstrap,
                        topic=settings.alerts_topic, clickhouse=insert,
                        kafka_options=settings.kafka_security.client_options())
    election = Election(settings.kafka_bootstrap, topic=f"{settings.topic}.evaluator",
                        group=f"{settings.worker_group}.evaluator",
                        kafka_options=settings.kafka_security.client_options())
    return Evaluator(settings, rules, notifier, election, connect=lambda: connect(settings))

"""The detector: the alert rules evaluated at every closed base window, with hysteresis.

A pure engine on a clock; the evaluator (:mod:`aipulse_alerts.evaluator`) feeds it rows merged
over every partition from ClickHouse and tells it how far the stream is complete::

    det = Detector(load_rules(), window_s=settings.window_s)
    det.replace(merged_rows)                 # rows read from metrics_window (all partitions)
    det.gauges.newest_ts_ms = {...}          # what the silence and lag rules read
    for alert in det.tick(ready_ms=t):       # evaluates the windows closed and complete up to t
        notifier.send(alert)                 # alert.status is "firing" or "resolved"

Unit tests may feed contribution rows instead (``observe(rows, events)``: one row per
(partition, offset block), summed by :class:`~aipulse_alerts.contributions.WindowStore`).

The jobs live apart: reading and summing rows in :mod:`.contributions`, a rule's verdict in
:mod:`.evaluation`, firing and resolving in :mod:`.hysteresis`, the notification's labels and
text in :mod:`.alert`.

When a window is evaluated. Base window [s, s + W) is evaluated once the wall clock passes
s + W + ``close_delay_s`` and, when the caller gives ``ready_ms``, once every partition's
stored progress passed s + W (the evaluator's completeness check): a stalled partition or an
unreachable ClickHouse holds the evaluation, so nothing resolves for lack of input. Each
evaluation time T: every rule computes its metric over [T - window, T) per group. The detector
never evaluates the past on its first tick: it starts at the current time.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from .alert import SOURCE, Alert, render
from .contributions import WindowStore, ts_ms
from .evaluation import Gauges, SpendSource, rule_results
from .hysteresis import Hysteresis
from .rules import METRICS, Metric, RuleSet

CLOSE_DELAY_S = 1.0          # wall-clock wait after a window's end before it is evaluated
CHUNK_S = 60                 # older windows are folded into chunks of this length
FOLD_MARGIN_S = 300          # keep full detail this long beyond the longest quantile span
SWEEP_S = 60                 # how often old windows are folded and dropped
CATCH_UP_MAX = 360           # at most this many windows evaluated in one tick after a hold
LAG_SAMPLES_MAX = 10_000     # bounded memory for pipeline lag samples

__all__ = ["Alert", "Detector", "CLOSE_DELAY_S"]


class Detector:
    """Rules in, alerts out. Not thread-safe: one thread (the evaluator's) calls it."""

    def __init__(self, rules: RuleSet, window_s: int, *, close_delay_s: float = CLOSE_DELAY_S,
                 clock: Callable[[], float] = time.time, source: str = SOURCE,
                 spend: SpendSource | None = None):
        self.rules = [r for r in rules.enabled]
        self.window_s = int(window_s)
        self._w = self.window_s * 1000
        self.close_delay_s = close_delay_s
        self.clock = clock
        self.source = source
        for r in self.rules:
            for s in (r.window_s, r.short_window_s, r.baseline.window_s if r.baseline else None):
                if s and s % self.window_s:
                    raise ValueError(f"rule {r.name!r}: its windows must be multiples of the base window "
                                     f"({self.window_s}s)")
        chunk = max(CHUNK_S * 1000 // self._w, 1) * self._w
        quantile_span = max((r.span_s() for r in self.rules if METRICS[r.metric].kind == "quantile"), default=0)
        self.store = WindowStore(self.window_s, fine_keep_ms=(quantile_span + FOLD_MARGIN_S) * 1000,
                                 keep_ms=max((r.span_s() for r in self.rules), default=0) * 1000 + chunk * 2,
                                 chunk_ms=chunk)
        self.hysteresis = Hysteresis()
        self.gauges = Gauges(newest_ts_ms=self.store.newest_ts_ms)
        self._spend_source = spend
        self._spend: dict[tuple[str, str], dict[int, float]] = {}   # unit tests' in-memory spend
        self._offsets: dict[int, int] = {}
        self._cursor_ms: int | None = None                           # end of the last evaluated window
        self._last_sweep = 0.0
        self.evaluations = 0

    @property
    def rows_seen(self) -> int:
        return self.store.rows_seen

    @property
    def too_late(self) -> int:
        return self.store.too_late

    @property
    def cursor_ms(self) -> int | None:
        return self._cursor_ms

    def set_spend_source(self, spend: SpendSource) -> None:
        """Where per-user spend is read: ``spend(start_ms, end_ms) -> [(service, user, cost)]``."""
        self._spend_source = spend

    def needs_spend(self) -> bool:
        return any(r.metric == Metric.user_spend_usd for r in self.rules)

    # -- input -------------------------------------------------------------------------
    def replace(self, rows: list[dict], now: float | None = None) -> None:
        """Rows merged over all partitions (one per window and key), e.g. from ClickHouse."""
        self.store.replace(rows, self.clock() if now is None else now)

    def add_lag(self, lag_s: float, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        samples = self.gauges.lag_samples
        samples.append((now, lag_s))
        if len(samples) > LAG_SAMPLES_MAX:
            del samples[: len(samples) - LAG_SAMPLES_MAX]

    def observe(self, rows: list[dict], events: Iterable | None = None, now: float | None = None) -> None:
        """Contribution rows (one per partition and block) and optionally (partition, offset, event)s."""
        now = self.clock() if now is None else now
        newest = self.store.observe(rows, now)
        if newest:
            self.add_lag(max(0.0, now - newest / 1000), now)
        if events is not None and self.needs_spend():
            for p, o, ev in events:
                if o <= self._offsets.get(p, -1):
                    continue  # redelivered: already counted
                self._offsets[p] = o
                if getattr(ev, "kind", "") != "interaction" or ev.shadow or not ev.user_id or not ev.cost_usd:
                    continue
                t = ts_ms(ev.ts)
                per = self._spend.setdefault((ev.service, ev.user_id), {})
                per[t - t % self._w] = per.get(t - t % self._w, 0.0) + ev.cost_usd

    def _memory_spend(self, start: int, end: int) -> list[tuple[str, str, float]]:
        out = []
        for (service, user), per in self._spend.items():
            total = sum(c for w, c in per.items() if start <= w < end)
            if total > 0:
                out.append((service, user, total))
        return out

    # -- state taken over from the store -------------------------------------------------
    def restore(self, firing: list[dict], now: float | None = None) -> list[Alert]:
        """Resume alerts stored as firing (``StoreReader.firing_alerts()``); returns them rendered.

        They stay firing (and are not sent again) until a full ``resolve_after`` without a breach.
        """
        now_ms = int((self.clock() if now is None else now) * 1000)
        by_name = {r.name: r for r in self.rules}
        out = []
        for f in firing:
            rule = by_name.get(f["rule"])
            if rule is None or any(d not in f["group"] for d in rule.group_by):
                continue  # a rule removed or regrouped since: let Alertmanager expire it
            g = tuple(f["group"][d] for d in rule.group_by)
            st = self.hysteresis.restore(rule.name, g, f["starts_at_ms"], now_ms,
                                         (f.get("value"), f.get("threshold"), f.get("baseline")))
            out.append(render(rule, dict(f["group"]), "firing", st.firing_since, now_ms, st.last, self.source))
        return out

    # -- evaluation --------------------------------------------------------------------
    def tick(self, now: float | None = None, ready_ms: int | None = None) -> list[Alert]:
        """Evaluate every window closed (and complete up to ``ready_ms``) since the last call."""
        now = self.clock() if now is None else now
        closed = int((now - self.close_delay_s) * 1000)
        if ready_ms is not None:
            closed = min(closed, ready_ms)
        closed -= closed % self._w
        if self._cursor_ms is None:
            self._cursor_ms = closed - self._w  # start now, never evaluate the past
        if (closed - self._cursor_ms) // self._w > CATCH_UP_MAX:
            self._cursor_ms = closed - CATCH_UP_MAX * self._w
        out: list[Alert] = []
        while self._cursor_ms < closed:
            self._cursor_ms += self._w
            out.extend(self.evaluate(self._cursor_ms, now))
        if now - self._last_sweep >= SWEEP_S:
            self._last_sweep = now
            self.store.fold(now)
            self._sweep(now)
        return out

    def evaluate(self, t_ms: int, now: float) -> list[Alert]:
        """Evaluate all rules at window end ``t_ms`` (tests call this directly)."""
        self.evaluations += 1
        spend = self._spend_source or self._memory_spend
        out = []
        for rule in self.rules:
            results = rule_results(rule, t_ms, now, self.store, self.hysteresis, self.gauges, spend)
            for group, status, st in self.hysteresis.step(rule, results, t_ms):
                out.append(render(rule, group, status, st.firing_since, t_ms, st.last, self.source))
        return out

    def _sweep(self, now: float) -> None:
        samples = self.gauges.lag_samples
        longest = max((r.window_s for r in self.rules), default=0)
        samples[:] = [s for s in samples if s[0] >= now - longest]
        oldest = int(now * 1000) - self.store.keep_ms
        for k in list(self._spend):
            per = self._spend[k]
            for w in [w for w in per if w < oldest]:
                del per[w]
            if not per:
                del self._spend[k]

    def firing(self) -> list[tuple[str, tuple]]:
        """(rule, group) of every alert currently firing."""
        return self.hysteresis.firing()

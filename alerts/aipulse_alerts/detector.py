"""The streaming detector: evaluates the alert rules at every closed base window.

Fed by the worker's metrics stage with the rows of each batch (the full states that
``WindowAggregator.drain_rows()`` returns) and, for per-user spend, the batch's events;
evaluated on a clock::

    det = Detector(load_rules(), window_s=settings.window_s)
    det.observe(rows, events)          # once per batch; cheap: only stores
    for alert in det.tick():           # every second or so; evaluates newly closed windows
        notifier.send(alert)           # alert.status is "firing" or "resolved"

How rows are merged. A drained row is the contribution of one (partition, offset block) to a
(window, key); it is re-emitted with a higher ``version`` as its block grows, and a replay
re-emits it with the same version. The detector keeps, per identity (window, key, partition,
block), the row with the highest version, and sums identities per (window, key): replays and
re-emissions never add twice.

When a window is evaluated. Base window [s, s + W) is closed once the wall clock passes
s + W + ``close_delay_s`` (events reach the worker within a batch, ~0.5 s, plus SDK send
time). Each closed window end T is one evaluation time: every rule computes its metric over
[T - window, T) per group. Rows for windows before the evaluation cursor still count for later
evaluations (baselines, long windows), but the detector never evaluates the past: after a
restart it starts at the current time. Windows older than the longest quantile rule's span are
folded into one-minute chunks without latency sketches, so a 6 h burn-rate window costs a few
hundred additions per group, not thousands.

Hysteresis (per rule and group): the alert fires when the rule has breached at every
evaluation for ``sustain`` (a single breaching evaluation when sustain is 0) and resolves after
``resolve_after`` with no breach. While it fires its trailing baseline is frozen at the value it
had when it fired, so a long incident does not become the new normal. A group with less than
``min_volume`` in the window does not breach (an alert whose traffic vanished resolves).

Several workers: each evaluates the partitions it owns, so counts (cost, volume, spend) are
its share of the total; rates and quantiles are estimates from that share. Alertmanager
merges identical alerts from several workers. See docs/alerts.md.
"""
from __future__ import annotations

import collections
import hashlib
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from aipulse_catalog.sketch import merge_buckets, quantile_from_buckets
from aipulse_stream.transforms.windows import COUNT_COLUMNS, FLOAT_COLUMNS

from .rules import METRICS, MONTH_S, WINDOW_DIMENSIONS, Metric, Rule, RuleSet

CLOSE_DELAY_S = 2.0          # wall-clock wait after a window's end before it is evaluated
CHUNK_S = 60                 # older windows are folded into chunks of this length
FOLD_MARGIN_S = 300          # keep full detail this long beyond the longest quantile span
USER_SWEEP_S = 60            # how often per-user spend entries past every window are dropped
LAG_SAMPLES_MAX = 10_000     # bounded memory for pipeline lag samples

FIELDS = COUNT_COLUMNS + FLOAT_COLUMNS
IDX = {f: i for i, f in enumerate(FIELDS)}
NF = len(FIELDS)


class Agg:
    """Summed columns of any set of window rows: counters plus latency/ttft sketch buckets."""

    __slots__ = ("v", "latency", "ttft")

    def __init__(self):
        self.v = [0.0] * NF
        self.latency: dict[int, int] = {}
        self.ttft: dict[int, int] = {}

    @classmethod
    def of_row(cls, row: dict) -> "Agg":
        a = cls()
        a.v = [float(row.get(f, 0) or 0) for f in FIELDS]
        a.latency = dict(row.get("latency_buckets") or {})
        a.ttft = dict(row.get("ttft_buckets") or {})
        return a

    def add(self, other: "Agg", sketches: bool = True) -> None:
        v = self.v
        for i, x in enumerate(other.v):
            v[i] += x
        if sketches:
            merge_buckets(self.latency, other.latency)
            merge_buckets(self.ttft, other.ttft)

    def sum(self, cols: Iterable[str]) -> float:
        return sum(self.v[IDX[c]] for c in cols)


def metric_value(rule: Rule, agg: Agg, window_s: int) -> tuple[float | None, float]:
    """(value, volume) of the rule's metric on summed columns; value None when undefined."""
    d = METRICS[rule.metric]
    volume = agg.sum(d.volume) if d.volume else 0.0
    if d.kind == "ratio":
        den = agg.sum(d.denominator)
        if den <= 0:
            return None, volume
        value = agg.sum(d.numerator) / den
        if rule.metric == Metric.error_budget_burn:
            value /= 1.0 - rule.slo_target
        return value, volume
    if d.kind == "quantile":
        buckets = agg.latency if d.buckets == "latency_buckets" else agg.ttft
        q = quantile_from_buckets(buckets, d.q) if buckets else math.nan
        return (None if math.isnan(q) else q), volume
    if d.kind == "run_rate":
        return agg.sum(d.numerator) * MONTH_S / window_s, volume
    if d.kind == "sum":
        return agg.sum(d.numerator), volume
    raise ValueError(f"{rule.metric.value} is not computed from window rows")


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


@dataclass
class Alert:
    """One notification: a state change of one rule for one group."""

    rule: str
    status: str                      # "firing" | "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float                 # epoch s
    ends_at: float | None            # epoch s; set when resolved
    value: float | None
    threshold: float | None
    baseline: float | None
    group: dict[str, str] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        """Stable for one alert: rule, group labels and start time."""
        text = repr((self.rule, sorted(self.group.items()), round(self.starts_at, 3)))
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class _State:
    pending_since: float | None = None   # first evaluation of the current breach streak (ms)
    firing_since: float | None = None    # ms
    last_breach: float | None = None     # ms
    frozen_baseline: float | None = None
    last: tuple | None = None            # (value, threshold, baseline) at the last breach


def _ts_ms(t) -> int:
    if isinstance(t, datetime):
        return int(round(t.timestamp() * 1000))
    return int(round(float(t) * 1000))


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


class Detector:
    """Rules in, alerts out. Not thread-safe: the worker's hook serialises calls."""

    def __init__(self, rules: RuleSet, window_s: int, *, close_delay_s: float = CLOSE_DELAY_S,
                 clock: Callable[[], float] = time.time, source: str = "aipulse-stream"):
        self.rules = [r for r in rules.enabled]
        self.window_s = int(window_s)
        self._w = self.window_s * 1000
        self._chunk = max(CHUNK_S * 1000 // self._w, 1) * self._w
        self.close_delay_s = close_delay_s
        self.clock = clock
        self.source = source
        for r in self.rules:
            for s in (r.window_s, r.short_window_s, r.baseline.window_s if r.baseline else None):
                if s and s % self.window_s:
                    raise ValueError(f"rule {r.name!r}: its windows must be multiples of the base window "
                                     f"({self.window_s}s)")
        quantile_span = max((r.span_s() for r in self.rules if METRICS[r.metric].kind == "quantile"), default=0)
        self._fine_keep_ms = (quantile_span + FOLD_MARGIN_S) * 1000
        self._keep_ms = max((r.span_s() for r in self.rules), default=0) * 1000 + self._chunk * 2
        # (window_ms) -> key -> (partition, block) -> (version, Agg)
        self._contrib: dict[int, dict[tuple, dict[tuple, tuple[int, Agg]]]] = {}
        self._window_cache: dict[int, dict[tuple, Agg]] = {}     # summed per key, fine windows
        self._chunks: dict[int, dict[tuple, Agg]] = {}            # folded, no sketches
        self._cursor_ms: int | None = None                         # end of the last evaluated window
        self._states: dict[tuple[str, tuple], _State] = {}
        # Per-user spend (user_spend_usd rules): (service, user) -> {window_ms: cost}.
        self._spend: dict[tuple[str, str], dict[int, float]] = {}
        self._offsets: dict[int, int] = {}                        # partition -> last event offset seen
        self._last_sweep = 0.0
        self._last_seen: dict[str, float] = {}                    # service ("" = any) -> wall s
        self._lag: collections.deque[tuple[float, float]] = collections.deque(maxlen=LAG_SAMPLES_MAX)
        self.rows_seen = 0
        self.evaluations = 0
        self.too_late = 0   # contributions to windows already folded away (not counted)

    # -- input -------------------------------------------------------------------------
    def observe(self, rows: list[dict], events: Iterable | None = None, now: float | None = None) -> None:
        """Store one batch: drained window rows and, optionally, its (partition, offset, event)s."""
        now = self.clock() if now is None else now
        newest = 0
        fold_before = self._fold_horizon(now)
        for row in rows:
            w = _ts_ms(row["window_start"])
            key = (row["service"], row["feature"], row["model"], row["variant"])
            if w < fold_before:
                self.too_late += 1
                continue
            ident = (row.get("partition", 0), row.get("block", 0))
            version = int(row.get("version", 0))
            per_key = self._contrib.setdefault(w, {}).setdefault(key, {})
            old = per_key.get(ident)
            if old is not None and old[0] >= version:
                continue  # a replay or an unchanged re-emission
            per_key[ident] = (version, Agg.of_row(row))
            self._window_cache.pop(w, None)
            self.rows_seen += 1
            ts = _ts_ms(row["max_ts"]) if row.get("max_ts") is not None else 0
            newest = max(newest, ts)
            if row.get("requests") or row.get("feedback_up") or row.get("evaluated") or ts:
                self._last_seen[row["service"]] = now
                self._last_seen[""] = now
        if newest:
            self._lag.append((now, max(0.0, now - newest / 1000)))
        if events is not None and any(r.metric == Metric.user_spend_usd for r in self.rules):
            self._observe_spend(events)

    def _observe_spend(self, events: Iterable) -> None:
        for p, o, ev in events:
            if o <= self._offsets.get(p, -1):
                continue  # redelivered: already counted
            self._offsets[p] = o
            if getattr(ev, "kind", "") != "interaction" or ev.shadow or not ev.user_id or not ev.cost_usd:
                continue
            t = _ts_ms(ev.ts)
            w = t - t % self._w
            per = self._spend.setdefault((ev.service, ev.user_id), {})
            per[w] = per.get(w, 0.0) + ev.cost_usd

    # -- storage -----------------------------------------------------------------------
    def _fold_horizon(self, now: float) -> int:
        cut = int(now * 1000) - self._fine_keep_ms
        return cut - cut % self._chunk

    def _window(self, w: int) -> dict[tuple, Agg] | None:
        cached = self._window_cache.get(w)
        if cached is not None:
            return cached
        per_key = self._contrib.get(w)
        if per_key is None:
            return None
        out = {}
        for key, idents in per_key.items():
            a = Agg()
            for _, contrib in idents.values():
                a.add(contrib)
            out[key] = a
        self._window_cache[w] = out
        return out

    def _fold(self, now: float) -> None:
        """Fold fine windows older than the quantile horizon into chunks; drop what no rule reads."""
        horizon = self._fold_horizon(now)
        for w in [w for w in self._contrib if w < horizon]:
            win = self._window(w) or {}
            chunk = self._chunks.setdefault(w - w % self._chunk, {})
            for key, a in win.items():
                c = chunk.get(key)
                if c is None:
                    c = chunk[key] = Agg()
                c.add(a, sketches=False)
            del self._contrib[w]
            self._window_cache.pop(w, None)
        oldest = int(now * 1000) - self._keep_ms
        for c in [c for c in self._chunks if c < oldest]:
            del self._chunks[c]

    def _sum(self, start: int, end: int, project, sketches: bool) -> dict[tuple, Agg]:
        """Per group, the sum of everything in windows [start, end)."""
        out: dict[tuple, Agg] = {}
        sources = []
        for c, chunk in self._chunks.items():
            if start <= c and c + self._chunk <= end:
                sources.append(chunk)
        for w in self._contrib:
            if start <= w < end:
                win = self._window(w)
                if win:
                    sources.append(win)
        for src in sources:
            for key, a in src.items():
                g = project(key)
                if g is None:
                    continue
                acc = out.get(g)
                if acc is None:
                    acc = out[g] = Agg()
                acc.add(a, sketches)
        return out

    # -- evaluation --------------------------------------------------------------------
    def tick(self, now: float | None = None) -> list[Alert]:
        """Evaluate every window closed since the last call; return the state changes."""
        now = self.clock() if now is None else now
        closed = int((now - self.close_delay_s) * 1000)
        closed -= closed % self._w
        if self._cursor_ms is None:
            self._cursor_ms = closed - self._w  # start now, never evaluate the past
        out: list[Alert] = []
        while self._cursor_ms < closed:
            self._cursor_ms += self._w
            out.extend(self.evaluate(self._cursor_ms, now))
        if now - self._last_sweep >= USER_SWEEP_S:
            self._last_sweep = now
            self._fold(now)
            self._sweep_spend(now)
        return out

    def evaluate(self, t_ms: int, now: float) -> list[Alert]:
        """Evaluate all rules at window end ``t_ms`` (tests call this directly)."""
        self.evaluations += 1
        out = []
        for rule in self.rules:
            results = self._rule_results(rule, t_ms, now)
            out.extend(self._transition(rule, results, t_ms))
        return out

    def _rule_results(self, rule: Rule, t: int, now: float) -> dict[tuple, tuple]:
        """group -> (breach, value, threshold, baseline, labels dict) for one rule at t."""
        kind = METRICS[rule.metric].kind
        if kind == "gauge":
            return self._gauge_results(rule, now)
        if rule.metric == Metric.user_spend_usd:
            return self._spend_results(rule, t)
        dims = rule.group_by
        variant_base = rule.baseline is not None and rule.baseline.kind == "variant"
        where = {k: set(v) for k, v in rule.where.items()}
        pre = {k: v for k, v in where.items() if not (variant_base and k == "variant")}
        pos = [WINDOW_DIMENSIONS.index(d) for d in dims]

        def project(key):
            for k, allowed in pre.items():
                if key[WINDOW_DIMENSIONS.index(k)] not in allowed:
                    return None
            return tuple(key[i] for i in pos)

        sketches = kind == "quantile"
        win = rule.window_s * 1000
        cur = self._sum(t - win, t, project, sketches)
        short = None
        if rule.short_window_s:
            short = self._sum(t - rule.short_window_s * 1000, t, project, sketches)
        base = None
        if rule.baseline is not None and rule.baseline.kind == "trailing":
            base = self._sum(t - win - rule.baseline.window_s * 1000, t - win, project, sketches)
        results = {}
        keys = set(cur) | {g for (name, g) in self._states if name == rule.name}
        for g in keys:
            group = dict(zip(dims, g))
            if variant_base and "variant" in where and group.get("variant") not in where["variant"]:
                continue
            results[g] = self._judge(rule, g, group, cur, short, base, dims)
        return results

    def _judge(self, rule: Rule, g: tuple, group: dict, cur, short, base, dims) -> tuple:
        op = _OPS[rule.comparison]
        w_s = rule.window_s
        a = cur.get(g)
        if a is None:
            return (False, None, None, None, group)
        value, volume = metric_value(rule, a, w_s)
        threshold = rule.threshold_for(group)
        if value is None or volume < rule.min_volume:
            return (False, value, threshold, None, group)
        ok = threshold is None or op(value, threshold)
        baseline = None
        if rule.baseline is not None:
            b = rule.baseline
            state = self._states.get((rule.name, g))
            if state is not None and state.firing_since is not None and state.frozen_baseline is not None:
                baseline = state.frozen_baseline
            else:
                if b.kind == "trailing":
                    ba = base.get(g) if base else None
                    bw = b.window_s
                else:
                    sib = tuple(b.variant if d == "variant" else x for d, x in zip(dims, g))
                    ba = cur.get(sib)
                    bw = w_s
                if ba is not None:
                    bv, bvol = metric_value(rule, ba, bw)
                    need = rule.min_volume if b.min_volume is None else b.min_volume
                    if bv is not None and bvol >= need:
                        baseline = bv
            if baseline is None:
                ok = False
            else:
                ok = ok and op(value, b.factor * baseline) and abs(value - baseline) >= b.min_delta
        if ok and short is not None:
            sa = short.get(g)
            sv, svol = metric_value(rule, sa, rule.short_window_s) if sa is not None else (None, 0)
            # The short window needs volume too, scaled to its length.
            need = rule.min_volume * rule.short_window_s / w_s
            ok = sv is not None and svol >= need and (threshold is None or op(sv, threshold))
        return (ok, value, threshold, baseline, group)

    def _gauge_results(self, rule: Rule, now: float) -> dict[tuple, tuple]:
        op = _OPS[rule.comparison]
        out = {}
        if rule.metric == Metric.silence_s:
            if rule.group_by:
                items = [((s,), {"service": s}, t) for s, t in self._last_seen.items() if s]
            else:
                items = [((), {}, self._last_seen[""])] if "" in self._last_seen else []
            for g, group, seen in items:
                if rule.where.get("service") and group.get("service") not in rule.where["service"]:
                    continue
                value = now - seen
                out[g] = (op(value, rule.threshold), value, rule.threshold, None, group)
        else:  # pipeline_lag_s: the worst lag sample of the window
            since = now - rule.window_s
            samples = [lag for at, lag in self._lag if at >= since]
            if samples:
                value = max(samples)
                out[()] = (op(value, rule.threshold), value, rule.threshold, None, {})
            elif ((rule.name, ()) in self._states):
                out[()] = (False, None, rule.threshold, None, {})
        return out

    def _spend_results(self, rule: Rule, t: int) -> dict[tuple, tuple]:
        op = _OPS[rule.comparison]
        start = t - rule.window_s * 1000
        out = {}
        firing = {g for (name, g) in self._states if name == rule.name}
        for (service, user), per in self._spend.items():
            if rule.where.get("service") and service not in rule.where["service"]:
                continue
            group = {"service": service, "user_id": user}
            g = tuple(group[d] for d in rule.group_by)
            total = sum(c for w, c in per.items() if start <= w < t)
            if total <= 0 and g not in firing:
                continue
            threshold = rule.threshold_for(group)
            prev = out.get(g)
            if prev is not None:  # group_by without service: add up services
                total += prev[1]
            out[g] = (op(total, threshold), total, threshold, None, group)
        for g in firing - out.keys():
            out[g] = (False, 0.0, rule.threshold, None, dict(zip(rule.group_by, g)))
        return out

    def _sweep_spend(self, now: float) -> None:
        spans = [r.window_s for r in self.rules if r.metric == Metric.user_spend_usd]
        if not spans:
            return
        oldest = int(now * 1000) - (max(spans) + 2 * self.window_s) * 1000
        for k in list(self._spend):
            per = self._spend[k]
            for w in [w for w in per if w < oldest]:
                del per[w]
            if not per:
                del self._spend[k]

    # -- hysteresis --------------------------------------------------------------------
    def _transition(self, rule: Rule, results: dict[tuple, tuple], t: int) -> list[Alert]:
        out = []
        for g, (breach, value, threshold, baseline, group) in results.items():
            key = (rule.name, g)
            st = self._states.get(key)
            if st is None:
                if not breach:
                    continue
                st = self._states[key] = _State()
            if st.firing_since is None:
                if not breach:
                    del self._states[key]
                    continue
                if st.pending_since is None:
                    st.pending_since = t
                st.last_breach = t
                st.last = (value, threshold, baseline)
                if (t - st.pending_since) >= rule.sustain_s * 1000:
                    st.firing_since = t
                    st.frozen_baseline = baseline
                    out.append(self._alert(rule, group, st, "firing", t))
            else:
                if breach:
                    st.last_breach = t
                    st.last = (value, threshold, baseline)
                elif t - st.last_breach >= rule.resolve_after_s * 1000:
                    out.append(self._alert(rule, group, st, "resolved", t))
                    del self._states[key]
        return out

    def _alert(self, rule: Rule, group: dict, st: _State, status: str, t: int) -> Alert:
        value, threshold, baseline = st.last or (None, None, None)
        labels = {"alertname": rule.name, "severity": rule.severity.value, "source": self.source}
        labels.update({k: v for k, v in group.items()})
        labels.update(rule.labels)
        fmt = collections.defaultdict(str, {k: v for k, v in group.items()})
        fmt.update(value=_fmt(value), threshold=_fmt(threshold), baseline=_fmt(baseline),
                   factor=_fmt(value / baseline) if value is not None and baseline else "n/a")
        summary = (rule.summary or f"{rule.name}: {rule.metric.value} = {{value}}").format_map(fmt)
        annotations = {
            "summary": summary,
            "runbook": rule.runbook,
            "metric": rule.metric.value,
            "value": _fmt(value),
            "window": f"{rule.window_s}s",
        }
        if threshold is not None:
            annotations["threshold"] = _fmt(threshold)
        if baseline is not None:
            annotations["baseline"] = _fmt(baseline)
        if rule.runbook_url:
            annotations["runbook_url"] = rule.runbook_url
        return Alert(
            rule=rule.name, status=status, labels=labels, annotations=annotations,
            starts_at=st.firing_since / 1000, ends_at=(t / 1000 if status == "resolved" else None),
            value=value, threshold=threshold, baseline=baseline, group=dict(group),
        )

    def firing(self) -> list[tuple[str, tuple]]:
        """(rule, group) of every alert currently firing."""
        return [k for k, st in self._states.items() if st.firing_since is not None]

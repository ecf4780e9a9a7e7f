"""Synthetic window rows on a fake clock, fed to a Detector window by window (unit tests only)."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from aipulse_alerts.detector import Detector
from aipulse_alerts.rules import RuleSet, load_rules
from aipulse_catalog.sketch import record
from aipulse_stream.transforms.windows import COUNT_COLUMNS, FLOAT_COLUMNS

START = 1_800_000_000  # epoch s, a multiple of every base window used here


def row(ws: float, *, service="svc", feature="chat", model="m-a", variant="", partition=0, block=0,
        version=1, latencies=(), max_ts=None, **counts) -> dict:
    """A drained window row like WindowAggregator.drain_rows() gives (counts by column name)."""
    d = {"service": service, "feature": feature, "model": model, "variant": variant,
         "window_start": datetime.fromtimestamp(ws, timezone.utc), "topic": "t",
         "partition": partition, "block": block, "version": version}
    for c in COUNT_COLUMNS:
        d[c] = counts.pop(c, 0)
    for c in FLOAT_COLUMNS:
        d[c] = float(counts.pop(c, 0.0))
    assert not counts, f"unknown columns {counts}"
    buckets: dict[int, int] = {}
    for x in latencies:
        record(buckets, x)
    if latencies and not d["requests"]:
        d["requests"] = len(latencies)
    d["latency_buckets"] = buckets
    d["ttft_buckets"] = {}
    d["max_ts"] = datetime.fromtimestamp(max_ts if max_ts is not None else ws + 1, timezone.utc)
    return d


class Sim:
    """Runs windows through a detector for one rule (or a rule set) on a fake clock.

    ``step(rows_fn)``: rows_fn(ws, rng) gives the rows of the window [ws, ws + W); the clock
    then moves past the window's end plus the close delay and the detector ticks.
    """

    def __init__(self, rule: str | None = None, window_s: int = 10, rules: RuleSet | None = None, seed: int = 1):
        rs = rules or load_rules()
        if rule is not None:
            rs = RuleSet(rules=[rs.rule(rule)])
        self.W = window_s
        self.now = float(START)
        self.det = Detector(rs, window_s, clock=lambda: self.now)
        self.det.tick(self.now)
        self.rng = random.Random(seed)
        self.alerts = []
        self.ws = START

    def step(self, rows_fn, events_fn=None) -> list:
        ws = self.ws
        rows = rows_fn(ws, self.rng) if rows_fn else []
        events = events_fn(ws, self.rng) if events_fn else None
        self.now = ws + self.W * 0.5
        self.det.observe(rows, events, now=self.now)
        self.ws += self.W
        self.now = self.ws + self.det.close_delay_s + 0.01
        out = self.det.tick(self.now)
        self.alerts.extend(out)
        return out

    def run(self, n: int, rows_fn, events_fn=None) -> list:
        out = []
        for _ in range(n):
            out.extend(self.step(rows_fn, events_fn))
        return out

    def firing(self):
        return [a for a in self.alerts if a.status == "firing"]

    def resolved(self):
        return [a for a in self.alerts if a.status == "resolved"]


def noisy(rng: random.Random, mean: float, rel: float = 0.15) -> int:
    """A count near ``mean`` (+-rel), never negative."""
    return max(0, round(rng.gauss(mean, mean * rel)))


def binom(rng: random.Random, n: int, p: float) -> int:
    return sum(1 for _ in range(n) if rng.random() < p)


def lognormal_latencies(rng: random.Random, n: int, median_ms: float, sigma: float = 0.35) -> list[float]:
    import math

    return [rng.lognormvariate(math.log(median_ms), sigma) for _ in range(n)]

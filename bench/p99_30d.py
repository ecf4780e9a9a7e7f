"""A 30-day P99 by feature from window rows, next to quantileExact over the raw events.

The issue-10 benchmark "a 30-day P99 by feature from window rows vs quantileExact over 10
million raw events". Running 10 million events through the worker would take most of an hour
here, so both sides are written directly, from the same generated events:

- **raw**: every event as a row of ``interactions`` (TabSeparated inserts of 500k rows);
- **window rows**: the production aggregator (``aipulse_stream.transforms.windows.
  WindowAggregator``, the code the worker runs) fed the same events in offset order on 4
  partitions, each drain inserted into ``metrics_window`` as the worker's metrics stage does
  (a block's rows in one insert), so the hourly and daily rollup views fill as they do in
  production.

Then the read side's 30-day figure (``aipulse_stream.readside.query.metrics_query`` grouped by
feature, the query ``aipulse metrics`` runs: whole days from ``metrics_daily``, the edges from
the hourly and base tables) is compared with ``quantileExact(0.99)(latency_ms)`` over the raw
table, per feature. The sketch's stated bound is 1 % relative error (transforms/sketch.py,
DDSketch alpha = 0.01) against the exact quantile under its rank rule (the lower quantile,
index floor(q (n - 1))); ``quantileExact`` picks index floor(q n), one rank higher at most, so
the error against it is also printed against the lower-rank exact value computed here.

Latencies per feature: lognormal (three spreads), bimodal, Pareto (alpha 1.5), and a
heavy-tailed lognormal; event times spread over the last 30 days (exponential gaps).

    .venv/bin/python bench/p99_30d.py                       # 10 million events (~10-25 min on 2 busy CPUs)
    .venv/bin/python bench/p99_30d.py --events 1000000      # quicker
    .venv/bin/python bench/p99_30d.py --json                # + one JSON object at the end

Exit status 0 when every feature's error is within the stated bound.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from datetime import datetime, timezone

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchStack, machine, say  # noqa: E402

from aipulse.contract import Interaction  # noqa: E402
from aipulse_stream.readside.query import metrics_query  # noqa: E402
from aipulse_stream.transforms.sketch import ALPHA, rank_index  # noqa: E402
from aipulse_stream.transforms.windows import WindowAggregator  # noqa: E402

DAYS = 30
PARTITIONS = 4
RAW_CHUNK = 500_000            # raw rows per insert
WINDOW_INSERT_ROWS = 20_000    # window rows gathered from whole drains before one insert
Q = 0.99
RAW_COLUMNS = ("event_id", "interaction_id", "schema_version", "ts", "service", "feature", "model", "provider",
               "variant", "latency_ms", "input_tokens", "output_tokens", "outcome", "_topic", "_partition", "_offset")
FEATURES = ("chat", "search", "summarize", "code", "classify", "agent")


def latencies(rng: np.random.Generator, feature: str, n: int) -> np.ndarray:
    """Latency (ms) of ``n`` calls of a feature; one distribution per feature."""
    if feature == "chat":
        x = rng.lognormal(np.log(800), 0.6, n)
    elif feature == "search":
        x = rng.lognormal(np.log(120), 0.35, n)
    elif feature == "summarize":  # bimodal: cache hits and full generations
        fast = rng.random(n) < 0.7
        x = np.where(fast, rng.lognormal(np.log(400), 0.3, n), rng.lognormal(np.log(3000), 0.3, n))
    elif feature == "code":       # Pareto, alpha 1.5, from 200 ms
        x = 200.0 * (1.0 + rng.pareto(1.5, n))
    elif feature == "classify":
        x = rng.lognormal(np.log(60), 1.0, n)
    else:                         # agent: long, heavy-tailed
        x = rng.lognormal(np.log(5000), 0.9, n)
    return np.minimum(np.round(x, 3), 6.0e8)  # contract ceiling: a week


class Stream:
    """The generated events, chunk by chunk, in event-time order (deterministic per seed)."""

    def __init__(self, n: int, seed: int, end_s: float):
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.span_ms = DAYS * 86_400_000 - 2 * 3_600_000   # an hour of room at both ends
        self.start_ms = int(end_s * 1000) - DAYS * 86_400_000 + 3_600_000
        self.mean_gap = self.span_ms / n
        self.t = float(self.start_ms)
        self.i = 0

    def chunk(self, size: int) -> dict:
        size = min(size, self.n - self.i)
        gaps = self.rng.exponential(self.mean_gap, size)
        ts = (self.t + np.cumsum(gaps)).astype(np.int64)
        self.t = float(ts[-1])
        fidx = self.rng.integers(0, len(FEATURES), size)
        lat = np.empty(size)
        for k, f in enumerate(FEATURES):
            sel = fidx == k
            lat[sel] = latencies(self.rng, f, int(sel.sum()))
        idx = np.arange(self.i, self.i + size)
        self.i += size
        return {"idx": idx, "ts_ms": np.minimum(ts, self.start_ms + self.span_ms), "feature": fidx, "latency": lat}


def place(idx: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(partition, offset) of global event numbers: consecutive runs of ``block`` events go to
    the partitions in turn, so each partition's offsets follow event time (no late events) and
    each offset block is complete when its drain comes."""
    run = idx // block
    return run % PARTITIONS, (run // PARTITIONS) * block + idx % block


def raw_tsv(c: dict, service: str, topic: str, block: int) -> bytes:
    part, off = place(c["idx"], block)
    ts = np.char.replace(np.datetime_as_string(c["ts_ms"].astype("datetime64[ms]"), unit="ms"), "T", " ")
    feats = np.array(FEATURES)[c["feature"]]
    lines = []
    for i, t, f, lat, p, o in zip(c["idx"].tolist(), ts.tolist(), feats.tolist(), c["latency"].tolist(),
                                  part.tolist(), off.tolist()):
        eid = f"{service}-{i:09d}"
        lines.append(f"{eid}\t{eid}\t1.0\t{t}\t{service}\t{f}\tm-1\tbench\t\t{lat!r}\t10\t20\tok\t{topic}\t{p}\t{o}")
    return ("\n".join(lines) + "\n").encode()


class Events:
    """Interaction objects for the aggregator, built without pydantic's per-event validation
    (the values are generated valid): a copy of one validated event's fields per event."""

    def __init__(self, service: str):
        proto = Interaction.model_validate({
            "schema_version": "1.0", "event_id": "proto", "ts": "2026-01-01T00:00:00Z", "service": service,
            "interaction_id": "proto", "kind": "interaction", "feature": "chat", "model": "m-1", "provider": "bench",
            "latency_ms": 1.0, "input_tokens": 10, "output_tokens": 20, "outcome": "ok"})
        self._fields = dict(proto.__dict__)
        self._set = proto.__pydantic_fields_set__

    def make(self, event_id: str, ts: datetime, feature: str, latency: float) -> Interaction:
        ev = Interaction.__new__(Interaction)
        d = dict(self._fields)
        d["event_id"] = d["interaction_id"] = event_id
        d["ts"], d["feature"], d["latency_ms"] = ts, feature, latency
        object.__setattr__(ev, "__dict__", d)
        object.__setattr__(ev, "__pydantic_fields_set__", self._set)
        object.__setattr__(ev, "__pydantic_extra__", None)
        object.__setattr__(ev, "__pydantic_private__", None)
        return ev


def aggregate(agg: WindowAggregator, events: Events, c: dict, service: str, block: int, flush) -> None:
    """Feed a chunk to the aggregator, draining after every round of blocks (as the worker does
    after every batch); ``flush(rows)`` inserts whole drains."""
    part, off = place(c["idx"], block)
    utc = timezone.utc
    fromts = datetime.fromtimestamp
    round_size = block * PARTITIONS
    add = agg.add
    for i, t, f, lat, p, o in zip(c["idx"].tolist(), c["ts_ms"].tolist(), c["feature"].tolist(),
                                  c["latency"].tolist(), part.tolist(), off.tolist()):
        add(p, o, events.make(f"{service}-{i:09d}", fromts(t / 1000, utc), FEATURES[f], lat))
        if (i + 1) % round_size == 0:
            flush(agg.drain_rows())
            agg.drain_progress()
    # a partial round at the end of the stream is drained by the caller


def run(n: int, home: str | None, seed: int) -> dict:
    run_id = uuid.uuid4().hex[:8]
    service = f"p99-{run_id}"
    topic = f"aipulse.bench.p99.{run_id}"
    with BenchStack(home, worker=False) as stack:
        settings = stack.settings
        db = settings.database
        ch = stack.clickhouse()
        block = settings.offset_block
        agg = WindowAggregator(settings, topic)
        events = Events(service)
        stream = Stream(n, seed, time.time())
        pending: list[dict] = []
        window_rows = [0]
        per_feature: dict[int, list[np.ndarray]] = {k: [] for k in range(len(FEATURES))}
        cols = None

        def insert_windows(force: bool = False) -> None:
            nonlocal cols
            if pending and (force or len(pending) >= WINDOW_INSERT_ROWS):
                cols = cols or list(pending[0])
                ch.insert(f"{db}.metrics_window", [[r[k] for k in cols] for r in pending], column_names=cols)
                window_rows[0] += len(pending)
                pending.clear()

        def flush(rows: list[dict]) -> None:
            pending.extend(rows)
            insert_windows()

        say(f"{n:,} interactions of service {service}, {len(FEATURES)} features, over {DAYS} days; "
            f"window {settings.window_s}s, offset block {block}, {PARTITIONS} partitions")
        t0 = time.perf_counter()
        t_raw = t_agg = 0.0
        while stream.i < n:
            c = stream.chunk(RAW_CHUNK)
            for k in range(len(FEATURES)):
                per_feature[k].append(c["latency"][c["feature"] == k])
            a = time.perf_counter()
            ch.raw_insert(f"{db}.interactions", column_names=list(RAW_COLUMNS), insert_block=raw_tsv(c, service, topic, block),
                          fmt="TabSeparated")
            b = time.perf_counter()
            aggregate(agg, events, c, service, block, flush)
            t_raw += b - a
            t_agg += time.perf_counter() - b
            say(f"  {stream.i:>11,} / {n:,} events stored raw and aggregated ({time.perf_counter() - t0:,.0f}s; "
                f"{window_rows[0] + len(pending):,} window rows)")
        flush(agg.drain_rows())
        insert_windows(force=True)
        load_s = time.perf_counter() - t0

        # On the window grid: a window is read when its start is in [start, end), so the first
        # window (starting before the first event) must not be cut off; the raw side reads the same range.
        w = settings.window_s
        start = datetime.fromtimestamp(stream.start_ms // 1000 // w * w - w, timezone.utc)
        end = datetime.fromtimestamp((stream.start_ms + stream.span_ms) // 1000 // w * w + 2 * w, timezone.utc)
        a = time.perf_counter()
        sketch_rows = metrics_query(ch, settings, ["feature"], start, end, where={"service": [service]})
        sketch_s = time.perf_counter() - a
        a = time.perf_counter()
        exact_rows = ch.query(
            f"SELECT feature, count(), quantileExact({Q})(latency_ms) FROM {db}.interactions "
            "WHERE service = {s:String} AND ts >= {a:DateTime64(3)} AND ts < {b:DateTime64(3)} GROUP BY feature",
            parameters={"s": service, "a": start, "b": end}).result_rows
        exact_s = time.perf_counter() - a
        ch.close()

    exact = {f: (int(cnt), float(q)) for f, cnt, q in exact_rows}
    out = {}
    for k, f in enumerate(FEATURES):
        vals = np.sort(np.concatenate(per_feature[k]))
        lower = float(vals[rank_index(Q, len(vals))])  # the sketch's rank rule, exact
        row = next((r for r in sketch_rows if r["feature"] == f), None)
        got = None if row is None else row["latency_p99_ms"]
        cnt, qe = exact.get(f, (0, float("nan")))
        out[f] = {"events": int(len(vals)), "raw_rows": cnt, "window_requests": None if row is None else row["requests"],
                  "sketch_p99_ms": got, "quantile_exact_p99_ms": qe, "lower_rank_exact_p99_ms": lower,
                  "rel_error_vs_quantile_exact": None if got is None else abs(got - qe) / qe,
                  "rel_error_vs_same_rank": None if got is None else abs(got - lower) / lower}
    ok = all(r["rel_error_vs_same_rank"] is not None and r["rel_error_vs_same_rank"] <= ALPHA
             and r["raw_rows"] == r["events"] == r["window_requests"] for r in out.values())
    return {"events": n, "days": DAYS, "service": service, "window_rows": window_rows[0], "bound": ALPHA,
            "load_seconds": load_s, "raw_insert_seconds": t_raw, "aggregate_seconds": t_agg,
            "sketch_query_seconds": sketch_s, "exact_query_seconds": exact_s, "features": out, "ok": ok}


def report(r: dict) -> None:
    say("")
    say(f"30-day P99 latency by feature: read side (window rows and rollups) vs quantileExact over "
        f"{r['events']:,} raw events ({r['window_rows']:,} window rows)")
    say(f"{'feature':12}{'events':>11}{'sketch P99':>13}{'quantileExact':>15}{'rel. error':>12}"
        f"{'same-rank exact':>17}{'rel. error':>12}{'bound':>8}")
    for f, x in r["features"].items():
        e1, e2 = x["rel_error_vs_quantile_exact"], x["rel_error_vs_same_rank"]
        say(f"{f:12}{x['events']:>11,}{x['sketch_p99_ms'] or float('nan'):>11,.1f}ms{x['quantile_exact_p99_ms']:>13,.1f}ms"
            f"{'-' if e1 is None else f'{e1:.3%}':>12}{x['lower_rank_exact_p99_ms']:>15,.1f}ms"
            f"{'-' if e2 is None else f'{e2:.3%}':>12}{r['bound']:>8.0%}")
    say(f"(load: {r['load_seconds']:,.0f}s = raw inserts {r['raw_insert_seconds']:,.0f}s + aggregation and window "
        f"inserts {r['aggregate_seconds']:,.0f}s; read-side query {r['sketch_query_seconds']:.2f}s, "
        f"quantileExact {r['exact_query_seconds']:.2f}s)")
    say("ok: every error within the bound, raw rows = window requests = events" if r["ok"] else "NOT ok (see above)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--home", default=None, help="reuse this AIPULSE_HOME (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=30)
    ap.add_argument("--json", action="store_true", help="also print the result as one JSON object")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    say(f"aipulse 30-day P99 benchmark ({machine()})")
    r = run(args.events, args.home, args.seed)
    report(r)
    if args.json:
        print(json.dumps(r, indent=2))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

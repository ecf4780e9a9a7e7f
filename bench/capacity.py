"""Capacity arithmetic for docs/scaling.md, from figures measured by bench/run.py.

    .venv/bin/python bench/capacity.py                         # reads bench/out/results.json
    .venv/bin/python bench/capacity.py --results FILE --markdown

For 10 thousand, 1 million and 100 million events a day it prints the worker processes, the
ClickHouse storage per day and the Kafka retention footprint, from:

- the measured one-worker rate (``worker.events_per_s``, one process, about one core);
- the measured bytes per row on disk after merge of each table, and Kafka's bytes per message
  in its log segments (``footprint``);
- the assumptions written below as named constants (peak factor, event mix, window keys,
  retention, replication); change them here, not in the doc.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOLUMES = (10_000, 1_000_000, 100_000_000)      # events per day
PEAK_FACTOR = 10.0          # the busiest second carries 10x the daily mean rate
HEADROOM = 0.5              # run workers at half their measured rate (rebalances, replays)
MIX = {"interactions": 0.83, "feedback": 0.13, "evaluations": 0.04}   # the benchmark's mix
WINDOW_S = 10               # base window (Settings.window_s)
ACTIVE_KEYS = 200           # (service, feature, model, variant) keys active in a window
RETENTION_DAYS = 7          # log.retention.hours=168, the local broker's and compose's setting
REPLICATION = 3             # production Kafka replication factor


def load(path: Path) -> dict:
    r = json.loads(path.read_text())["benchmarks"]
    fig = lambda b, k: (r.get(b, {}).get("figures", {}).get(k) or {}).get("median")  # noqa: E731
    out = {"worker_rate": fig("worker", "worker.events_per_s"), "bytes_per_row": {},
           "kafka_bytes_per_message": fig("footprint", "kafka_bytes_per_message")}
    for t in (*MIX, "metrics_window"):
        out["bytes_per_row"][t] = fig("footprint", f"bytes_per_row.{t}")
    missing = [k for k, v in [("worker rate", out["worker_rate"]), ("kafka bytes", out["kafka_bytes_per_message"]),
                              *out["bytes_per_row"].items()] if v is None]
    if missing:
        raise SystemExit(f"{path} lacks {', '.join(missing)}: run `bench/run.py --only worker,footprint` first")
    return out


def plan(volume: int, worker_rate: float, bpr: dict, kafka_bpm: float) -> dict:
    mean = volume / 86400.0
    peak = mean * PEAK_FACTOR
    workers = max(1, math.ceil(peak / (worker_rate * HEADROOM)))
    raw = sum(volume * share * bpr[t] for t, share in MIX.items())
    window_rows = 86400 / WINDOW_S * ACTIVE_KEYS
    windows = window_rows * bpr["metrics_window"]
    kafka = volume * kafka_bpm * RETENTION_DAYS * REPLICATION
    return {"events_per_day": volume, "mean_per_s": mean, "peak_per_s": peak, "workers": workers,
            "partitions": max(4, 2 * workers), "clickhouse_raw_bytes_per_day": raw,
            "clickhouse_window_bytes_per_day": windows, "kafka_retained_bytes": kafka}


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} PB"


def markdown(plans: list[dict], m: dict) -> str:
    lines = ["| events/day | mean / peak events/s | worker processes | partitions | ClickHouse raw/day | "
             "window rows/day | Kafka retained |", "|---|---|---|---|---|---|---|"]
    for p in plans:
        lines.append(f"| {p['events_per_day']:,} | {p['mean_per_s']:,.1f} / {p['peak_per_s']:,.0f} | {p['workers']} | "
                     f"{p['partitions']} | {human(p['clickhouse_raw_bytes_per_day'])} | "
                     f"{human(p['clickhouse_window_bytes_per_day'])} | {human(p['kafka_retained_bytes'])} |")
    bpr = ", ".join(f"{t} {v:.0f} B" for t, v in m["bytes_per_row"].items())
    lines.append("")
    lines.append(f"From: one worker {m['worker_rate']:,.0f} events/s (run at {HEADROOM:.0%}); bytes per row on disk "
                 f"{bpr}; peak {PEAK_FACTOR:.0f}x the mean; {ACTIVE_KEYS} active keys per {WINDOW_S} s window; "
                 f"Kafka {m['kafka_bytes_per_message']:.0f} B per message on disk (measured), {RETENTION_DAYS} days, "
                 f"replication {REPLICATION}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(ROOT / "bench" / "out" / "results.json"))
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (docs/scaling.md)")
    ap.add_argument("--doc", action="store_true", help="write the table into docs/scaling.md (between its markers)")
    args = ap.parse_args(argv)
    m = load(Path(args.results))
    plans = [plan(v, m["worker_rate"], m["bytes_per_row"], m["kafka_bytes_per_message"]) for v in VOLUMES]
    md = markdown(plans, m)
    print(md if args.markdown or args.doc else json.dumps(plans, indent=2))
    if args.doc:
        doc = ROOT / "docs" / "scaling.md"
        pre, rest = doc.read_text().split("<!-- capacity:start -->", 1)
        _, post = rest.split("<!-- capacity:end -->", 1)
        doc.write_text(f"{pre}<!-- capacity:start -->\n{md}\n<!-- capacity:end -->{post}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

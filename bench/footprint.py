"""Footprint: worker memory by distinct window keys, and ClickHouse bytes per stored row.

    .venv/bin/python bench/footprint.py                       # 1k, 10k, 100k keys; 100k interactions each
    .venv/bin/python bench/footprint.py --keys 1000 --events 20000 --json

For each key count K, a fresh local stack with one worker (``BenchStack``) consumes
``--events`` interactions (plus ~20 % feedback and evaluations, the benchmark's usual JSON
layout from the real Azure trace's token counts) whose feature is one of K names, so the
worker holds K distinct (window, service, feature, model, variant) rows per window. After the
worker has aggregated everything (``partition_progress`` = events sent) it reports:

- the worker's resident memory now and at its peak (``VmRSS`` / ``VmHWM`` of /proc/<pid>);
- per ClickHouse table: rows, bytes on disk and bytes per row after a final merge (the
  figures docs/scaling.md multiplies by daily volume).

The baseline is the same worker at the smallest key count of the run. Exit status 1 when the
worker did not finish.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchStack, EventFactory, say  # noqa: E402

TABLES = ("interactions", "feedback", "evaluations", "metrics_window", "partition_progress")
SPAN_S = 3600.0
TIMEOUT_S = 600


def produce(bootstrap: str, topic: str, n: int, keys: int, service: str) -> tuple[int, int]:
    """Send n interactions (+ feedback/evaluations) with features spread over ``keys`` names."""
    from kafka import KafkaProducer

    factory = EventFactory(service)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, compression_type="lz4",
                             linger_ms=50, batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    total = nbytes = 0
    i = 0
    for key, value, ts in factory.stream(n, time.time() - SPAN_S - 120, SPAN_S):
        if b'"kind":"interaction"' in value:
            ev = json.loads(value)
            ev["feature"] = f"feature-{i % keys:06d}"
            value = json.dumps(ev, separators=(",", ":")).encode()
            i += 1
        producer.send(topic, key=key, value=value, timestamp_ms=int(ts * 1000))
        total += 1
        nbytes += len(value)
    producer.flush(120)
    producer.close()
    return total, nbytes


def proc_memory_mb(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0]) / 1024.0
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


def table_sizes(ch, db: str) -> dict:
    out = {}
    for t in TABLES:
        try:
            ch.command(f"OPTIMIZE TABLE {db}.{t} FINAL")
        except Exception:  # noqa: BLE001  (a table the engine cannot merge further is still measured)
            pass
        r = ch.query("SELECT sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts "
                     "WHERE database = {d:String} AND table = {t:String} AND active",
                     parameters={"d": db, "t": t}).result_rows
        rows, disk, raw = (int(x or 0) for x in r[0])
        out[t] = {"rows": rows, "bytes_on_disk": disk, "uncompressed_bytes": raw,
                  "bytes_per_row": disk / rows if rows else None}
    return out


def one_run(keys: int, events: int) -> dict:
    from aipulse_local.state import StackState

    service = f"footprint-{keys}"
    with BenchStack(None, worker=True) as stack:
        settings = stack.settings
        ch = stack.clickhouse()
        pid = int(StackState(settings.state_dir).read()["worker"]["pid"])
        say(f"keys {keys:,}: producing {events:,} interactions + feedback/evaluations to {settings.topic}...")
        total, wire_bytes = produce(stack.bootstrap(), settings.topic, events, keys, service)
        t0 = time.time()
        done = False
        while time.time() - t0 < TIMEOUT_S:
            r = ch.query(f"SELECT sum(events) FROM {settings.database}.partition_progress FINAL").result_rows
            got = int(r[0][0] or 0)
            if got >= total:
                done = True
                break
            time.sleep(1.0)
        mem = proc_memory_mb(pid)
        say(f"keys {keys:,}: worker {'done' if done else 'NOT done'} in {time.time() - t0:.0f}s; "
            f"RSS {mem['rss_mb']:.0f} MB, peak {mem['peak_rss_mb']:.0f} MB")
        sizes = table_sizes(ch, settings.database)
        # Kafka's own log segments for the topic: bytes per message as the broker stores them
        # (lz4 record batches), the figure retention is sized from.
        segs = [f for f in (settings.state_dir / "kafka").rglob("*.log")
                if f.parent.name.rsplit("-", 1)[0] == settings.topic]
        kafka_bytes = sum(f.stat().st_size for f in segs)
    return {"keys": keys, "interactions": events, "events": total, "done": done, **mem, "tables": sizes,
            "kafka_bytes": kafka_bytes, "kafka_bytes_per_message": kafka_bytes / total if total else None,
            "wire_bytes_per_message": wire_bytes / total if total else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", default="1000,10000,100000", help="comma list of distinct feature counts")
    ap.add_argument("--events", type=int, default=100_000, help="interactions per run")
    ap.add_argument("--json", action="store_true", help="also print one JSON object (bench/run.py)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    runs = [one_run(int(k), args.events) for k in args.keys.split(",")]
    base = runs[0]
    say("")
    say(f"{'distinct keys':>14}{'events':>10}{'RSS MB':>9}{'peak MB':>9}{'vs first':>10}")
    for r in runs:
        say(f"{r['keys']:>14,}{r['events']:>10,}{r['rss_mb']:>9.0f}{r['peak_rss_mb']:>9.0f}"
            f"{r['peak_rss_mb'] / base['peak_rss_mb']:>9.2f}x")
    say("")
    say(f"ClickHouse bytes per row after a final merge (run with {base['keys']:,} keys):")
    for t, s in base["tables"].items():
        bpr = f"{s['bytes_per_row']:.1f}" if s["bytes_per_row"] else "-"
        say(f"  {t:22}{s['rows']:>10,} rows {s['bytes_on_disk']:>12,} bytes  {bpr:>8} B/row")
    if base["kafka_bytes_per_message"]:
        say(f"  kafka log segments      {base['kafka_bytes_per_message']:.0f} B/message on disk "
            f"({base['wire_bytes_per_message']:.0f} B of JSON each)")
    if args.json:
        print(json.dumps({"runs": runs}))
    return 0 if all(r["done"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

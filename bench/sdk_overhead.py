"""Caller-side cost of the SDK versus a bare kafka-python ``producer.send``, with a real broker.

What is measured is the time the *application's* thread spends per emitted interaction:
entering ``aipulse.interaction(...)``, one ``update()``, leaving the block (which enqueues the
event). Beside it, in the same run, the time of one bare ``KafkaProducer.send`` of the same
payload (already-serialized JSON, same key and timestamp) with the same producer settings.

    .venv/bin/python bench/sdk_overhead.py --bootstrap 127.0.0.1:39092
    .venv/bin/python bench/sdk_overhead.py --down     # the SDK against a stopped broker
    .venv/bin/python bench/sdk_overhead.py --compare-with /tmp/old/collectors --rounds 6

``--compare-with DIR`` runs the SDK-only measurement in fresh processes, alternating between
the SDK found in ``DIR`` (e.g. ``git archive <commit> collectors | tar -x -C /tmp/old``) and
this checkout's, so that both see the same machine load; it prints each round and the median
over rounds of each side's median and P99.

By default calls are paced (``--pace-us``, the app doing other work between model calls, as a
real app does; the pause sleeps so background threads run as they would). ``--pace-us 0``
is a tight loop, the worst case for GIL contention with the sender thread.

Targets (issue 4): SDK median <= 15 us, P99 <= 100 us, and median below the bare send's.
Exit status 0 when met, 1 otherwise.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import time
import uuid

TARGET_MEDIAN_US = 15.0
TARGET_P99_US = 100.0
DEFAULT_N = 20_000
DEFAULT_WARMUP = 2_000
DEFAULT_PACE_US = 200


def quantile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank quantile in microseconds."""
    i = min(len(sorted_ns) - 1, max(0, int(round(q * len(sorted_ns) + 0.5)) - 1))
    return sorted_ns[i] / 1000.0


def summarize(samples: list[int]) -> dict[str, float]:
    s = sorted(samples)
    return {"n": len(s), "median_us": quantile(s, 0.5), "p90_us": quantile(s, 0.9),
            "p99_us": quantile(s, 0.99), "p999_us": quantile(s, 0.999), "max_us": s[-1] / 1000.0,
            "mean_us": statistics.fmean(s) / 1000.0}


def pause(pace_us: int) -> None:
    if pace_us:
        time.sleep(pace_us / 1e6)


def bench_sdk(bootstrap: str, topic: str, n: int, warmup: int, pace_us: int) -> tuple[dict, dict]:
    import aipulse

    aipulse.init(kafka_bootstrap=bootstrap, topic=topic, service="bench", user_salt="bench-salt",
                 warn_interval_s=3600)
    interaction = aipulse.interaction
    clock = time.perf_counter_ns
    samples: list[int] = []
    deadline = time.monotonic() + 10
    with interaction(feature="bench-warmup"):
        pass  # starts the sender; then wait until it is connected (or give up when down)
    while not aipulse.stats()["kafka_connected"] and time.monotonic() < deadline and "127.0.0.1:1" != bootstrap:
        time.sleep(0.05)
    for i in range(warmup + n):
        t0 = clock()
        with interaction(feature="bench", model="gpt-4o", provider="openai", user_id="user-42") as call:
            call.update(input_tokens=512, output_tokens=128)
        t1 = clock()
        if i >= warmup:
            samples.append(t1 - t0)
        pause(pace_us)
    aipulse.flush(30)
    stats = aipulse.stats()
    aipulse.close()
    return summarize(samples), stats


def sample_payload() -> tuple[bytes, bytes]:
    """The exact bytes the SDK sends for the benchmark's interaction."""
    from aipulse.client import Client
    from aipulse.config import Config

    client = Client(Config.load(service="bench", user_salt="bench-salt"))
    fields = {"feature": "bench", "model": "gpt-4o", "provider": "openai", "user_id": "user-42",
              "input_tokens": 512, "output_tokens": 128, "event_id": uuid.uuid4().hex,
              "ts": time.time(), "latency_ms": 0.004}
    key, value, _ = client.prepare(("interaction", fields))
    return key, value


def bench_bare(bootstrap: str, topic: str, n: int, warmup: int, pace_us: int) -> dict:
    from kafka import KafkaProducer

    from aipulse.config import DEFAULT_BATCH_SIZE, DEFAULT_LINGER_MS

    key, value = sample_payload()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             compression_type="lz4", linger_ms=DEFAULT_LINGER_MS,
                             batch_size=DEFAULT_BATCH_SIZE)
    producer.partitions_for(topic)
    clock = time.perf_counter_ns
    samples: list[int] = []
    for i in range(warmup + n):
        t0 = clock()
        producer.send(topic, value=value, key=key, timestamp_ms=int(time.time() * 1000))
        t1 = clock()
        if i >= warmup:
            samples.append(t1 - t0)
        pause(pace_us)
    producer.flush(30)
    producer.close()
    return summarize(samples)


def create_topic(bootstrap: str, topic: str, partitions: int = 4) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def compare(args: argparse.Namespace) -> int:
    """Alternate old/new SDK runs in subprocesses; print per-round and overall figures."""
    import subprocess

    here = os.path.abspath(__file__)
    sides = {"old": args.compare_with, "new": args.new_from}
    results: dict[str, list[dict]] = {"old": [], "new": []}
    base = [sys.executable, here, "--bootstrap", args.bootstrap, "-n", str(args.n), "--warmup",
            str(args.warmup), "--pace-us", str(args.pace_us), "--sdk-only", "--json"]
    if args.down:
        base.append("--down")
    print(f"alternating old ({args.compare_with}) and new ({args.new_from or 'this checkout'}) SDK, {args.rounds} rounds, n={args.n}, "
          f"pace={args.pace_us} us, broker={'stopped' if args.down else args.bootstrap}")
    for r in range(args.rounds):
        for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
            env = dict(os.environ)
            if sides[side]:
                env["PYTHONPATH"] = sides[side] + os.pathsep + env.get("PYTHONPATH", "")
            out = subprocess.run(base, env=env, capture_output=True, text=True, timeout=600)
            sdk = json.loads(out.stdout)["sdk"]
            results[side].append(sdk)
            print(f"round {r + 1} {side}: median {sdk['median_us']:.2f} us, p99 {sdk['p99_us']:.2f} us", flush=True)
    for side in ("old", "new"):
        med = statistics.median(x["median_us"] for x in results[side])
        p99 = statistics.median(x["p99_us"] for x in results[side])
        print(f"{side}: median of medians {med:.2f} us, median of P99s {p99:.2f} us")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=os.environ.get("AIPULSE_KAFKA_BOOTSTRAP", "127.0.0.1:39092"))
    ap.add_argument("-n", type=int, default=DEFAULT_N)
    ap.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    ap.add_argument("--pace-us", type=int, default=DEFAULT_PACE_US,
                    help="sleep between calls, microseconds (0 = tight loop)")
    ap.add_argument("--down", action="store_true",
                    help="SDK only, pointed at a closed port: the broker-stopped case")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--sdk-only", action="store_true", help="skip the bare producer.send measurement")
    ap.add_argument("--compare-with", metavar="DIR",
                    help="alternate runs of the SDK in DIR (a collectors/ folder) and this one's")
    ap.add_argument("--new-from", metavar="DIR", help="with --compare-with: the new side's collectors/ "
                    "folder (default: this checkout's)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of --compare-with")
    args = ap.parse_args(argv)
    if args.compare_with:
        return compare(args)
    logging.basicConfig(level=logging.ERROR)
    gc.collect()

    topic = f"aipulse.bench.{uuid.uuid4().hex[:8]}"
    if not args.down:
        create_topic(args.bootstrap, topic)
    sdk_bootstrap = "127.0.0.1:1" if args.down else args.bootstrap
    sdk, stats = bench_sdk(sdk_bootstrap, topic, args.n, args.warmup, args.pace_us)
    bare = None if args.down or args.sdk_only else bench_bare(args.bootstrap, topic, args.n, args.warmup, args.pace_us)

    ok = sdk["median_us"] <= TARGET_MEDIAN_US and sdk["p99_us"] <= TARGET_P99_US
    if bare is not None:
        ok = ok and sdk["median_us"] < bare["median_us"]
    result = {"n": args.n, "pace_us": args.pace_us, "broker": "stopped" if args.down else args.bootstrap,
              "sdk": sdk, "bare_send": bare, "sdk_stats": stats, "targets_met": ok,
              "python": sys.version.split()[0], "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if ok else 1
    print(f"caller-side cost per emitted interaction, n={args.n}, pace={args.pace_us} us, "
          f"broker={result['broker']}, {os.cpu_count()} CPUs, Python {result['python']}")
    print(f"{'':22}{'median':>10}{'p90':>10}{'p99':>10}{'p99.9':>10}{'max':>10}  (microseconds)")
    rows = [("aipulse.interaction", sdk)] + ([("bare producer.send", bare)] if bare else [])
    for name, s in rows:
        print(f"{name:22}{s['median_us']:10.2f}{s['p90_us']:10.2f}{s['p99_us']:10.2f}"
              f"{s['p999_us']:10.2f}{s['max_us']:10.1f}")
    dropped = {k: v for k, v in stats["dropped"].items() if v}
    print(f"sdk stats: emitted={stats['emitted']} sent={stats['sent']} dropped={dropped} queued={stats['queued']}")
    print(f"targets (median <= {TARGET_MEDIAN_US} us, p99 <= {TARGET_P99_US} us"
          f"{', median below bare send' if bare else ''}): {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of TWO aipulse workers in one consumer group, next to the bare aiokafka loop.

The issue-10 benchmark "one worker and two workers vs the bare aiokafka+json loop": the
single-worker run is bench/worker_throughput.py; this one runs, on the same kind of topic and
in one run:

1. bare aiokafka + ``json.loads`` over the whole topic (its own group);
2. two ``python -m aipulse_stream.worker`` processes in one group of their own on that topic,
   timed from the first record either of them consumed until every event is stored and
   aggregated (``sum(events)`` of ``partition_progress FINAL`` equals what was sent); CPU per
   event per process (utime + stime of each process from /proc, from its own first record to
   the end, divided by the records it consumed);
3. the bare loop again (the machine is shared: the mean of before and after is the baseline);
4. the stored counts checked against what was sent.

    .venv/bin/python bench/workers_scaleout.py                  # 200k interactions, ~4 min
    .venv/bin/python bench/workers_scaleout.py --events 50000   # quicker
    .venv/bin/python bench/workers_scaleout.py --workers 3      # another group size

The topic has 4 partitions (as in worker_throughput.py), so each worker gets two. On this
2-core machine two workers share the cores with the broker and the ClickHouse endpoint, so the
figure says what a second process buys when the cores are already busy, not linear scaling.
Exit status 0 when everything was stored and the checks passed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchStack, create_topic, fmt_rate, machine, say, scrape  # noqa: E402
from worker_throughput import (DEFAULT_EVENTS, PARTITIONS, POLL_S, WORKER_TIMEOUT_S, bare_consume,  # noqa: E402
                               check_storage, proc_cpu_s, produce, progress_total)

CONSUMED = "aipulse_worker_consumed_total"


def spawn_workers(settings, names: list[str], extra: dict) -> dict[str, dict]:
    """Start the workers at once, without waiting for them (one after another, the first would
    read the whole topic before the second joins); like aipulse_local's start_worker."""
    from aipulse_local.process import free_port, spawn
    from aipulse_local.stack import worker_env
    from aipulse_local.state import StackState

    infos = {}
    for name in names:
        port = free_port()
        log_path = settings.state_dir / f"{name}.log"
        pid = spawn([sys.executable, "-m", "aipulse_stream.worker"], log_path, env=worker_env(settings, port, extra))
        infos[name] = {"pid": pid, "address": f"127.0.0.1:{port}", "log": str(log_path), "kind": "worker"}
        StackState(settings.state_dir).put(name, **infos[name])
    return infos


def run_workers(stack: BenchStack, topic: str, group: str, total: int, n_workers: int = 2) -> dict:
    """Start ``n_workers`` workers in one group on ``topic``; time them until all is stored.

    They are started together; the first to join may fetch alone until the group's rebalance
    hands the other its partitions: that start-up, as in a real scale-out, is in the time."""
    from aipulse_local.stack import stop_component
    from aipulse_local.state import pid_alive

    settings = stack.settings.model_copy(update={"topic": topic, "worker_group": group})
    ch = stack.clickhouse()
    db = settings.database
    extra = {"AIPULSE_TOPIC": topic, "AIPULSE_WORKER_GROUP": group}
    names = [f"bench-worker-{i + 1}" for i in range(n_workers)]
    infos = spawn_workers(settings, names, extra)
    t0 = time.perf_counter()
    say(f"  {n_workers} workers started (pids {', '.join(str(i['pid']) for i in infos.values())}); "
        "polled from now on, so that the first consumed record is seen however soon it comes")
    consumed = {n: 0.0 for n in names}
    first = {n: None for n in names}       # (time, cpu) at each worker's first consumed record
    done_at = None
    cpu_done: dict[str, float] = {}
    last_report = t0
    try:
        while time.perf_counter() - t0 < WORKER_TIMEOUT_S:
            time.sleep(POLL_S)
            now = time.perf_counter()
            for n, info in infos.items():
                try:
                    consumed[n] = scrape(info["address"]).get(CONSUMED, 0.0)
                except OSError:  # not listening yet (starting), or gone:
                    if not pid_alive(info["pid"]):
                        raise RuntimeError(f"{n} exited; see {info['log']}") from None
                    continue
                if first[n] is None and consumed[n] > 0:
                    first[n] = (now - POLL_S / 2, proc_cpu_s(info["pid"]))
            if sum(consumed.values()) >= total and progress_total(ch, db, topic) >= total:
                done_at = time.perf_counter()
                cpu_done = {n: proc_cpu_s(i["pid"]) for n, i in infos.items()}
                break
            if now - last_report >= 2:
                last_report = now
                say("  workers: consumed " + ", ".join(f"{consumed[n]:,.0f}" for n in names) + f" / {total:,}")
        stored = progress_total(ch, db, topic)
        for n, info in infos.items():  # the final counters (a replayed block counts twice)
            try:
                consumed[n] = scrape(info["address"]).get(CONSUMED, 0.0)
            except OSError:
                pass
    finally:
        for n in names:
            stop_component(settings, n)
        ch.close()
    starts = [f[0] for f in first.values() if f is not None]
    start = min(starts) if starts else t0
    end = done_at or time.perf_counter()
    per_process = {}
    for n in names:
        cpu = cpu_done[n] - first[n][1] if n in cpu_done and first[n] is not None else None
        per_process[n] = {"consumed": consumed[n],
                          "cpu_s": cpu,
                          "cpu_us_per_event": 1e6 * cpu / consumed[n] if cpu is not None and consumed[n] else None}
    cpu_total = sum(p["cpu_s"] for p in per_process.values() if p["cpu_s"] is not None)
    return {"events": stored, "seconds": end - start, "done": done_at is not None, "workers": n_workers,
            "join_seconds": start - t0, "per_process": per_process,
            "cpu_us_per_event": 1e6 * cpu_total / total if total else None}


def run(events: int, home: str | None, seed: int, n_workers: int = 2) -> dict:
    """bare, workers, bare on one fresh topic; returns the figures (``ok`` says the checks passed)."""
    run_id = uuid.uuid4().hex[:8]
    topic = f"aipulse.bench.{run_id}"
    service = f"bench-{run_id}"
    with BenchStack(home, worker=False) as stack:
        bootstrap = stack.bootstrap()
        create_topic(bootstrap, topic, PARTITIONS)
        say(f"topic {topic} ({PARTITIONS} partitions); producing {events:,} interactions + feedback/evaluations...")
        prod = produce(bootstrap, topic, events, service, seed)
        total = prod["total"]
        say("baseline: bare aiokafka consumer + json.loads...")
        bare_before = asyncio.run(bare_consume(bootstrap, topic, total, "json"))
        say(f"{n_workers} workers in one group...")
        workers = run_workers(stack, topic, f"bench-workers-{run_id}", total, n_workers)
        say("baseline again (bare, workers, bare)...")
        bare_after = asyncio.run(bare_consume(bootstrap, topic, total, "json"))
        checks = check_storage(stack, service, topic, prod["counts"])
    bare = {"events": bare_before["events"], "seconds": (bare_before["seconds"] + bare_after["seconds"]) / 2,
            "cpu_us_per_event": (bare_before["cpu_us_per_event"] + bare_after["cpu_us_per_event"]) / 2}
    rate = lambda r: r["events"] / r["seconds"] if r["seconds"] else 0.0  # noqa: E731
    ok = workers["done"] and all(exp == got for _, exp, got in checks)
    return {"events": total, "counts": prod["counts"], "bare": bare, "bare_before": bare_before,
            "bare_after": bare_after, "workers": workers, "bare_rate": rate(bare),
            "workers_rate": rate(workers), "checks": checks, "ok": ok}


def report(r: dict) -> None:
    w, bare_rate = r["workers"], r["bare_rate"]
    say("")
    say(f"{w['workers']} workers in one group vs a bare aiokafka loop, same topic, same run: {r['events']:,} events, "
        f"{PARTITIONS} partitions, {os.cpu_count()} CPUs")
    say(f"{'':46}{'events':>10}{'seconds':>10}{'events/s':>12}{'vs bare':>10}{'CPU µs/ev':>11}")
    for label, b in (("bare aiokafka + json.loads, before", r["bare_before"]),
                     ("bare aiokafka + json.loads, after", r["bare_after"])):
        br = b["events"] / b["seconds"] if b["seconds"] else 0.0
        say(f"{label:46}{b['events']:>10,}{b['seconds']:>10.1f}{fmt_rate(br):>12}{br / bare_rate:>9.2f}x"
            f"{b['cpu_us_per_event']:>11.1f}")
    say(f"{'bare (mean: baseline)':46}{r['bare']['events']:>10,}{r['bare']['seconds']:>10.1f}{fmt_rate(bare_rate):>12}"
        f"{'1.00x':>10}{r['bare']['cpu_us_per_event']:>11.1f}")
    cpu = w["cpu_us_per_event"]
    say(f"{str(w['workers']) + ' workers, end to end (stored)':46}{w['events']:>10,}{w['seconds']:>10.1f}"
        f"{fmt_rate(r['workers_rate']):>12}{r['workers_rate'] / bare_rate:>9.2f}x{cpu if cpu is None else round(cpu, 1)!s:>11}")
    for n, p in w["per_process"].items():
        c = p["cpu_us_per_event"]
        say(f"  {n:44}{p['consumed']:>10,.0f}{'':>32}{'-' if c is None else f'{c:.1f}':>11}")
    say("(seconds: from the first record either worker consumed to the last window row stored; CPU µs/ev per "
        "process: its utime+stime from its own first record to the end over the records it consumed; the "
        "group's line: both processes' CPU over the events sent)")
    for what, exp, got in r["checks"]:
        say(f"  {what:26}{exp:>10,}{got:>10,}  {'ok' if exp == got else 'MISMATCH'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="interactions to produce (plus ~20%% feedback/evaluations)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes in the group (default 2)")
    ap.add_argument("--home", default=None, help="reuse this AIPULSE_HOME (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--json", action="store_true", help="also print the result as one JSON object")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    say(f"aipulse two-worker throughput benchmark ({machine()})")
    r = run(args.events, args.home, args.seed, args.workers)
    report(r)
    if args.json:
        print(json.dumps(r, indent=2))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of ONE aipulse worker, next to a bare aiokafka loop decoding the same JSON.

Issue 3 must-show: "Throughput of one worker on this 2-core machine measured by a benchmark
script, next to the raw consume rate of a bare aiokafka loop decoding the same JSON in the
same run."

What it does, in one run:

1. starts the local stack without a worker (Kafka broker, ClickHouse endpoint over chDB) in
   its own AIPULSE_HOME (a temporary folder, or ``--home``);
2. creates a fresh topic (4 partitions) and pre-produces ``--events`` interactions (default
   200,000) plus feedback (15 %) and evaluations (5 %) with kafka-python (lz4, linger):
   the exact JSON layout the SDK sends, token counts from the real Azure LLM trace
   (../shared/data/azure-llm-trace-2023, CC-BY 4.0, Patel et al., ISCA 2024), latency,
   model and outcome synthesized, event times spread over the last hour;
3. baseline: a bare aiokafka consumer (own group) reads every message and ``json.loads`` it,
   before the worker and again after it (the machine is shared; the mean is the baseline);
   ``--contract-baseline`` adds a pass parsing with the event contract (pydantic);
4. the worker: one ``python -m aipulse_stream.worker`` (own group) on that topic; measured
   from its first consumed record until every event is stored and aggregated: validated, raw rows
   inserted, feedback joined, window rows and partition progress inserted (the run is done
   when ``sum(events)`` of ``partition_progress FINAL`` for the topic equals what was sent);
5. checks the stored counts against what was sent, prints the table, stops what it started.

    .venv/bin/python bench/worker_throughput.py                    # ~3-4 minutes
    .venv/bin/python bench/worker_throughput.py --events 50000     # quicker
    .venv/bin/python bench/worker_throughput.py --profile          # + cProfile of the pipeline in-process

Exit status 0 when the worker stored everything and the checks passed.
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

from common import BenchStack, EventFactory, create_topic, fmt_rate, machine, say, scrape  # noqa: E402

DEFAULT_EVENTS = 200_000
PARTITIONS = 4
SPAN_S = 3600.0          # event times spread over the last hour
WORKER_TIMEOUT_S = 600   # give up on the worker after this long
POLL_S = 0.25            # how often the worker's /metrics is read (the worker's clock resolution;
                         # at 0.1 s the scrapes alone cost the worker ~5 % of its CPU)


# ---------------------------------------------------------------- produce

def produce(bootstrap: str, topic: str, n: int, service: str, seed: int) -> dict:
    from kafka import KafkaProducer

    factory = EventFactory(service, seed=seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, compression_type="lz4",
                             linger_ms=50, batch_size=512 * 1024,
                             max_request_size=4 * 1024 * 1024)
    counts = {"interaction": 0, "feedback": 0, "evaluation": 0}
    nbytes = 0
    start_ts = time.time() - SPAN_S - 120
    t0 = time.perf_counter()
    last = t0
    total = 0
    for key, value, ts in factory.stream(n, start_ts, SPAN_S):
        producer.send(topic, key=key, value=value, timestamp_ms=int(ts * 1000))
        kind = value[value.find(b'"kind":"') + 8:].split(b'"', 1)[0].decode()
        counts[kind] += 1
        nbytes += len(value)
        total += 1
        now = time.perf_counter()
        if now - last >= 2:
            last = now
            say(f"  produce: {total:>9,} events  {total / (now - t0):>9,.0f} ev/s")
    producer.flush(120)
    producer.close()
    secs = time.perf_counter() - t0
    return {"counts": counts, "total": total, "bytes": nbytes, "seconds": secs,
            "attribution": factory.attribution}


# ---------------------------------------------------------------- baseline

async def bare_consume(bootstrap: str, topic: str, total: int, parse: str) -> dict:
    """Read the whole topic with a bare aiokafka consumer in a new group; decode each value."""
    from aiokafka import AIOKafkaConsumer

    if parse == "contract":
        from aipulse.contract import parse_event as decode
    else:
        decode = json.loads
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    t0 = time.perf_counter()
    await consumer.start()
    n = 0
    first = None
    cpu0 = None
    last_report = t0
    try:
        while n < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if first is None and batches:
                first = time.perf_counter()
                cpu0 = time.process_time()
            for msgs in batches.values():
                for msg in msgs:
                    decode(msg.value)
                n += len(msgs)
            now = time.perf_counter()
            if now - last_report >= 2:
                last_report = now
                say(f"  bare ({parse}): {n:>9,} / {total:,}")
            if now - t0 > WORKER_TIMEOUT_S:
                break
    finally:
        end = time.perf_counter()
        cpu = time.process_time() - (cpu0 or time.process_time())
        await consumer.stop()
    # From the first fetched batch (group join and first fetch excluded: join_seconds).
    return {"events": n, "seconds": end - (first or t0), "join_seconds": (first or end) - t0,
            "cpu_us_per_event": 1e6 * cpu / max(1, n)}


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the worker

def progress_total(ch, db: str, topic: str) -> int:
    r = ch.query(f"SELECT sum(events) FROM {db}.partition_progress FINAL WHERE topic = {{t:String}}",
                 parameters={"t": topic}).result_rows
    return int(r[0][0] or 0) if r else 0


def profiled_worker_main() -> int:
    """The worker (``aipulse_stream.worker.main``) under cProfile. A graceful stop cannot be
    relied on to write the stats (the worker holds the open offset block unacked, so Faust's
    shutdown waits for it until it is killed): the stats are written from the event loop's
    thread as soon as every event of the topic has gone through Pipeline.process."""
    import cProfile

    from aipulse_stream import pipeline as pipeline_mod
    from aipulse_stream.worker import main as worker_main

    out = os.environ["BENCH_PROFILE_OUT"]
    target = int(os.environ["BENCH_PROFILE_EVENTS"])
    prof = cProfile.Profile()
    seen = [0]
    original = pipeline_mod.Pipeline.process

    async def process(self, batch, still_owned=None):
        result = await original(self, batch, still_owned)
        seen[0] += len(batch)
        if seen[0] >= target and out:
            prof.disable()
            prof.dump_stats(out + ".tmp")
            os.replace(out + ".tmp", out)
            os.environ["BENCH_PROFILE_OUT"] = ""
        return result

    pipeline_mod.Pipeline.process = process
    prof.enable()
    return worker_main([])


def start_profiled_worker(settings, name: str, extra_env: dict, prof_path: str) -> dict:
    """start_worker(), but the process runs under cProfile (its stats are written at exit)."""
    from aipulse_local.process import free_port, spawn, wait_until
    from aipulse_local.stack import WORKER_START_TIMEOUT_S, worker_env, worker_ready
    from aipulse_local.state import StackState

    port = free_port()
    log_path = settings.state_dir / f"{name}.log"
    env = worker_env(settings, port, extra_env)
    env["BENCH_PROFILE_OUT"] = prof_path
    env["BENCH_PROFILE_EVENTS"] = str(extra_env["BENCH_PROFILE_EVENTS"])
    pid = spawn([sys.executable, os.path.abspath(__file__), "--profiled-worker"], log_path, env=env)
    address = f"127.0.0.1:{port}"
    wait_until(lambda: worker_ready(address), WORKER_START_TIMEOUT_S, pid, f"the {name}", log_path)
    info = {"pid": pid, "address": address, "log": str(log_path), "kind": "worker"}
    StackState(settings.state_dir).put(name, **info)
    return info


def run_worker(stack: BenchStack, topic: str, group: str, total: int, prof_path: str | None = None) -> dict:
    from aipulse_local.stack import start_worker, stop_component

    settings = stack.settings.model_copy(update={"topic": topic, "worker_group": group})
    ch = stack.clickhouse()
    db = settings.database
    extra = {"AIPULSE_TOPIC": topic, "AIPULSE_WORKER_GROUP": group}
    t_spawn = time.perf_counter()
    if prof_path:
        info = start_profiled_worker(settings, "bench-worker", {**extra, "BENCH_PROFILE_EVENTS": total}, prof_path)
    else:
        info = start_worker(settings, name="bench-worker", extra_env=extra)
    t0 = time.perf_counter()
    say(f"  worker: ready after {t0 - t_spawn:.1f}s (pid {info['pid']}, metrics http://{info['address']}/metrics)")
    samples: list[tuple[float, float]] = []  # (time, consumed)
    done_at = None
    first_at = None   # the first sample with a consumed record: the worker's clock starts there
    cpu_first = cpu_done = None
    consumed = 0.0
    last_report = t0
    metrics: dict = {}
    try:
        while time.perf_counter() - t0 < WORKER_TIMEOUT_S:
            time.sleep(POLL_S)
            now = time.perf_counter()
            try:
                metrics = scrape(info["address"])
                consumed = metrics.get("aipulse_worker_consumed_total", 0.0)
            except OSError:
                pass
            samples.append((now, consumed))
            if first_at is None and consumed > 0:
                first_at = now - POLL_S / 2  # the first batch arrived within the last poll interval
                cpu_first = proc_cpu_s(info["pid"])
            if consumed >= total and progress_total(ch, db, topic) >= total:
                done_at = time.perf_counter()
                cpu_done = proc_cpu_s(info["pid"])
                break
            if now - last_report >= 2:
                last_report = now
                say(f"  worker: consumed {consumed:>9,.0f} / {total:,}  ({consumed / (now - t0):>7,.0f} ev/s so far)")
        stored_progress = progress_total(ch, db, topic)
    finally:
        try:
            metrics = scrape(info["address"])
        except OSError:
            pass
        stop_component(settings, "bench-worker")
    if done_at is None:
        say(f"  worker: NOT done after {WORKER_TIMEOUT_S}s (aggregated {stored_progress:,} of {total:,})")
    end = done_at or time.perf_counter()
    start = first_at or t0
    cpu_us = 1e6 * (cpu_done - cpu_first) / total if cpu_done is not None and cpu_first is not None else None
    # Steady state: the consumed counter between 10 % and 90 % of the events.
    lo = next((s for s in samples if s[1] >= 0.1 * total), None)
    hi = next((s for s in samples if s[1] >= 0.9 * total), None)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if lo and hi and hi[0] > lo[0] else None
    return {"events": stored_progress, "seconds": end - start, "done": done_at is not None,
            "startup_seconds": t0 - t_spawn, "join_seconds": start - t0, "steady_rate": steady,
            "cpu_us_per_event": cpu_us, "metrics": metrics}


def check_storage(stack: BenchStack, service: str, topic: str, sent: dict) -> list[tuple[str, int, int]]:
    """(what, expected, found) for the raw tables and the window rows."""
    ch = stack.clickhouse()
    db = stack.settings.database
    p = {"s": service}
    q = lambda sql: int(ch.query(sql, parameters=p).result_rows[0][0] or 0)  # noqa: E731
    rows = [
        ("raw interactions", sent["interaction"], q(f"SELECT count() FROM {db}.interactions FINAL WHERE service = {{s:String}}")),
        ("raw feedback", sent["feedback"], q(f"SELECT count() FROM {db}.feedback FINAL WHERE service = {{s:String}}")),
        ("raw evaluations", sent["evaluation"], q(f"SELECT count() FROM {db}.evaluations FINAL WHERE service = {{s:String}}")),
        ("window requests", sent["interaction"], q(f"SELECT sum(requests) FROM {db}.metrics_window FINAL WHERE service = {{s:String}}")),
        ("window feedback up+down", sent["feedback"],
         q(f"SELECT sum(feedback_up + feedback_down) FROM {db}.metrics_window FINAL WHERE service = {{s:String}}")),
        ("window evaluated", sent["evaluation"], q(f"SELECT sum(evaluated) FROM {db}.metrics_window FINAL WHERE service = {{s:String}}")),
        ("window late + orphaned", 0, q(f"SELECT sum(late + orphaned) FROM {db}.metrics_window FINAL WHERE service = {{s:String}}")),
    ]
    ch.close()
    return rows


# ---------------------------------------------------------------- profile (optional)

async def profile_pipeline(stack: BenchStack, topic: str, total: int, limit: int, top: int) -> None:
    """cProfile of Pipeline.process in this process, ClickHouse calls included (run inline,
    not on the worker's executor thread, so the profiler sees them). Faust is not involved."""
    import cProfile
    import io
    import pstats

    from aiokafka import AIOKafkaConsumer

    from aipulse_stream.pipeline import Message, Pipeline

    topic_settings = stack.settings.model_copy(update={"topic": topic})
    batch_size = topic_settings.batch_max_events

    async def no_dlq(*_a):
        raise RuntimeError("unexpected dead letter")

    # Same topic and database as the worker's run (already checked): window rows come out
    # identical and replace theirs; raw rows are re-inserted and collapse under FINAL.
    pipe = Pipeline(topic_settings, dlq_send=no_dlq, topic=topic)
    await pipe.start()

    def inline(fn, *args):
        async def call():
            return fn(*args)
        return call

    pipe._in_thread = inline  # run ClickHouse calls on this thread, where cProfile sees them
    pipe._stored_upto = {}
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap(), group_id=f"bench-prof-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    msgs: list = []
    while len(msgs) < min(limit, total):
        batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
        for tp, ms in batches.items():
            msgs.extend(Message(tp.partition, m.offset, m.key, m.value, m.timestamp) for m in ms)
    await consumer.stop()
    msgs = msgs[:limit]
    # Offsets already stored by the worker run would be skipped: pretend they are new.
    pipe._load_stored_upto = lambda parts: pipe._stored_upto.update({p: -1 for p in parts if p not in pipe._stored_upto})
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(0, len(msgs), batch_size):
        await pipe.process(msgs[i:i + batch_size])
        # Reads run inline on this thread here, and a read waits for the writes in flight,
        # whose completion this same thread delivers: land them before the next batch.
        await pipe.flush()
    prof.disable()
    secs = time.perf_counter() - t0
    await pipe.stop()
    say(f"\ncProfile of Pipeline.process, {len(msgs):,} events in batches of {batch_size}: "
        f"{secs:.2f}s = {len(msgs) / secs:,.0f} ev/s in-process (profiler overhead included)")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    say("\n".join(ln for ln in out.getvalue().splitlines() if ln.strip())[:12000])
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    say("\n".join(ln for ln in out.getvalue().splitlines() if ln.strip())[:12000])


def print_profile(path: str, top: int) -> None:
    import io
    import pstats

    for _ in range(50):
        if os.path.exists(path):
            break
        time.sleep(0.2)
    if not os.path.exists(path):
        say(f"(no worker profile at {path}: the worker did not exit normally)")
        return
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(path, stream=out).sort_stats(key).print_stats(top)
        say(f"\nworker cProfile (main thread = Faust's event loop; the ClickHouse client runs on another "
            f"thread, its time shows as waits here), by {key}:")
        say("\n".join(ln for ln in out.getvalue().splitlines() if ln.strip()))


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="interactions to produce (plus ~20%% feedback/evaluations)")
    ap.add_argument("--home", default=None, help="reuse this AIPULSE_HOME (default: a temporary one, removed at the end)")
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--contract-baseline", action="store_true", help="also a bare loop parsing with the contract (pydantic)")
    ap.add_argument("--profile", action="store_true", help="then cProfile Pipeline.process in-process")
    ap.add_argument("--profile-events", type=int, default=50_000)
    ap.add_argument("--profile-worker", action="store_true",
                    help="run the worker itself under cProfile (its throughput then includes the profiler's overhead)")
    ap.add_argument("--json", action="store_true", help="also print the result as one JSON object")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a fresh broker's coordinator-not-ready retries

    say(f"aipulse worker throughput benchmark ({machine()})")
    run_id = uuid.uuid4().hex[:8]
    topic = f"aipulse.bench.{run_id}"
    service = f"bench-{run_id}"
    ok = True
    with BenchStack(args.home, worker=False) as stack:
        bootstrap = stack.bootstrap()
        create_topic(bootstrap, topic, PARTITIONS)
        say(f"topic {topic} ({PARTITIONS} partitions); producing {args.events:,} interactions + feedback/evaluations...")
        prod = produce(bootstrap, topic, args.events, service, args.seed)
        total = prod["total"]
        say(f"  produced {total:,} events ({prod['bytes'] / total:.0f} bytes each on average) in {prod['seconds']:.1f}s "
            f"= {total / prod['seconds']:,.0f} ev/s (generation + send)")
        say(f"  data: token counts and arrival pattern from {prod['attribution']}; latency, model, outcome synthesized")

        say("baseline: bare aiokafka consumer + json.loads...")
        bare = asyncio.run(bare_consume(bootstrap, topic, total, "json"))
        contract = None
        if args.contract_baseline:
            say("baseline 2: bare aiokafka consumer + contract parse (pydantic)...")
            contract = asyncio.run(bare_consume(bootstrap, topic, total, "contract"))

        say("worker: one aipulse worker (validate, raw insert, join, window aggregation, window insert)...")
        bare_before = bare
        stack.keep = stack.keep or args.profile_worker
        prof_path = str(stack.settings.state_dir / f"bench-worker-{run_id}.prof") if args.profile_worker else None
        worker = run_worker(stack, topic, f"bench-worker-{run_id}", total, prof_path)
        if prof_path:
            print_profile(prof_path, 30)
        say("baseline again (the machine is shared: bare, worker, bare): bare aiokafka consumer + json.loads...")
        bare_after = asyncio.run(bare_consume(bootstrap, topic, total, "json"))
        checks = check_storage(stack, service, topic, prod["counts"])
        if args.profile:
            asyncio.run(profile_pipeline(stack, topic, total, args.profile_events, 25))

    ok = worker["done"] and all(exp == got for _, exp, got in checks)
    rate = lambda r: r["events"] / r["seconds"] if r and r["seconds"] else 0.0  # noqa: E731
    # The bare rate the worker is compared with: the mean of the runs before and after it.
    bare = {"events": bare_before["events"], "seconds": (bare_before["seconds"] + bare_after["seconds"]) / 2,
            "join_seconds": bare_before["join_seconds"],
            "cpu_us_per_event": (bare_before["cpu_us_per_event"] + bare_after["cpu_us_per_event"]) / 2}
    bare_rate, worker_rate = rate(bare), rate(worker)
    say("")
    say(f"one worker vs a bare aiokafka loop, same topic, same run: {total:,} events "
        f"({prod['counts']['interaction']:,} interactions, {prod['counts']['feedback']:,} feedback, "
        f"{prod['counts']['evaluation']:,} evaluations), {PARTITIONS} partitions, {os.cpu_count()} CPUs")
    cpu = lambda r: f"{r['cpu_us_per_event']:.1f}" if r.get("cpu_us_per_event") is not None else "-"  # noqa: E731
    say(f"{'':44}{'events':>10}{'seconds':>10}{'events/s':>12}{'vs bare':>10}{'CPU µs/ev':>11}")
    for label, r in (("bare aiokafka + json.loads, before", bare_before), ("bare aiokafka + json.loads, after", bare_after)):
        say(f"{label:44}{r['events']:>10,}{r['seconds']:>10.1f}{fmt_rate(rate(r)):>12}{rate(r) / bare_rate:>9.2f}x{cpu(r):>11}")
    say(f"{'bare aiokafka + json.loads (mean: baseline)':44}{bare['events']:>10,}{bare['seconds']:>10.1f}"
        f"{fmt_rate(bare_rate):>12}{'1.00x':>10}{cpu(bare):>11}")
    if contract:
        cr = rate(contract)
        say(f"{'bare aiokafka + contract parse (pydantic)':44}{contract['events']:>10,}{contract['seconds']:>10.1f}"
            f"{fmt_rate(cr):>12}{cr / bare_rate:>9.2f}x")
    say(f"{'aipulse worker, end to end (stored)':44}{worker['events']:>10,}{worker['seconds']:>10.1f}"
        f"{fmt_rate(worker_rate):>12}{worker_rate / bare_rate:>9.2f}x{cpu(worker):>11}")
    if worker["steady_rate"]:
        say(f"{'  worker steady state (10%..90% consumed)':44}{'':>10}{'':>10}{fmt_rate(worker['steady_rate']):>12}"
            f"{worker['steady_rate'] / bare_rate:>9.2f}x")
    say(f"(worker seconds: from its first consumed record (read every {POLL_S}s) to the last window row "
        f"stored; process start to ready took {worker['startup_seconds']:.1f}s and ready to first record "
        f"{worker['join_seconds']:.1f}s more. CPU µs/ev: the whole worker process, all threads, from /proc; "
        f"bare: this process's CPU time. bare seconds: first fetch to last decode; "
        f"group join and first fetch took {bare['join_seconds']:.1f}s more.)")
    m = worker["metrics"]
    say(f"worker self-metrics: consumed {m.get('aipulse_worker_consumed_total', 0):,.0f}, "
        f"dead-lettered {m.get('aipulse_worker_dead_lettered_total', 0):,.0f}, "
        f"insert failures {m.get('aipulse_worker_insert_failures_total', 0):,.0f}, "
        f"batches {m.get('aipulse_worker_batch_size_count', 0):,.0f} "
        f"(mean {m.get('aipulse_worker_batch_size_sum', 0) / max(1, m.get('aipulse_worker_batch_size_count', 0)):,.0f} events), "
        f"ClickHouse insert time {m.get('aipulse_worker_insert_seconds_sum', 0):.1f}s in "
        f"{m.get('aipulse_worker_insert_seconds_count', 0):,.0f} inserts "
        f"(the endpoint's own elapsed time of them: {m.get('aipulse_worker_insert_server_seconds_total', 0):.1f}s)")
    say("stored vs sent:")
    for what, exp, got in checks:
        say(f"  {what:26}{exp:>10,}{got:>10,}  {'ok' if exp == got else 'MISMATCH'}")
    if args.json:
        print(json.dumps({"events": total, "counts": prod["counts"], "bare": bare, "bare_before": bare_before,
                          "bare_after": bare_after, "contract": contract,
                          "worker": {k: v for k, v in worker.items() if k != "metrics"},
                          "bare_rate": bare_rate, "worker_rate": worker_rate,
                          "checks": checks, "ok": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--profiled-worker"]:
        sys.exit(profiled_worker_main())
    sys.exit(main())

"""The SDK never hurts the app: one test per defect of issue 11, each seen failing on the code
before its fix: the breaker hook, timed calls, acall and the OpenAI request (merged first);
then interpreter exit (the tail delivered, no traceback), the byte bound (held memory, wire
bytes, `oversized`) and fork (the parent's producer, the shadow pool, breaker locks)."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from aipulse.reliability import CircuitBreaker, FallbackChain, Step, call_with_timeout



def test_a_state_change_hook_that_reads_the_breaker_does_not_deadlock():
    seen = []
    breaker = CircuitBreaker("hook/reads", failure_threshold=1, reset_timeout_s=0.01,
                             on_state_change=lambda name, old, new: seen.append((new, breaker.state)))

    def trip():
        breaker.failure()           # closed -> open: the hook reads breaker.state
        time.sleep(0.02)
        breaker.allow()             # open -> half_open (in _tick)
        breaker.success()           # half_open -> closed

    t = threading.Thread(target=trip, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "the breaker deadlocked in its own hook"
    assert [s[0] for s in seen] == ["open", "half_open", "closed"]


# ---------------------------------------------------------------- 4. timeouts


def test_hung_calls_do_not_starve_later_timed_calls():
    release = threading.Event()
    try:
        for _ in range(20):  # more hung provider calls than the old shared pool had threads
            with pytest.raises(TimeoutError):
                call_with_timeout(release.wait, 0.02)
        assert call_with_timeout(lambda x: x + 1, 2.0, 41) == 42
    finally:
        release.set()


def test_acall_runs_sync_steps_off_the_event_loop():
    chain = FallbackChain([Step("slow-sync", lambda q: time.sleep(0.4) or "ok", timeout_s=2),
                           Step("untimed-sync", lambda q: "never")], feature="async")

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        answer = await chain.acall("q")
        task.cancel()
        return answer, ticks

    answer, ticks = asyncio.run(main())
    assert answer == "ok"
    assert ticks >= 10, f"the event loop ran only {ticks} times during a 0.4 s sync step"


def test_acall_times_out_a_hung_sync_step_without_blocking():
    release = threading.Event()
    chain = FallbackChain([Step("hung", lambda q: release.wait(), timeout_s=0.05),
                           Step("backup", lambda q: "backup")], feature="async")
    try:
        t0 = time.monotonic()
        assert asyncio.run(chain.acall("q")) == "backup"
        assert time.monotonic() - t0 < 2
    finally:
        release.set()


# ---------------------------------------------------------------- 5. fork


@pytest.fixture(scope="module")
def providers():
    from .fake_providers import FakeProviders

    with FakeProviders() as srv:
        yield srv


def test_openai_streamed_request_is_sent_as_the_app_wrote_it(captured, providers):
    import openai

    from aipulse.integrations.openai import instrument_openai

    client = instrument_openai(openai.OpenAI(api_key="test", base_url=providers.openai_url, max_retries=0,
                                             timeout=5), feature="chat")
    msgs = [{"role": "user", "content": "hi"}]
    # "strict" answers 400 to any field it does not know, as some OpenAI-compatible servers do
    chunks = list(client.chat.completions.create(model="strict", messages=msgs, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello!"
    assert "stream_options" not in providers.requests[-1][1]
    (ev,) = captured.events
    assert ev["outcome"] == "ok" and ev["input_tokens"] == 0 and ev["ttft_ms"] > 0


# ---------------------------------------------------------------- 1. interpreter exit

EXIT_APP = r'''
import sys, time
import aipulse

bootstrap, topic, n, flush_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
aipulse.init(kafka_bootstrap=bootstrap, topic=topic, service="exit-app", user_salt="s",
             linger_ms=5, warn_interval_s=3600)
aipulse.record(feature="warm", latency_ms=1.0)
deadline = time.monotonic() + 30
while aipulse.stats()["sent"] < 1 and time.monotonic() < deadline:  # a long-running app: connected
    time.sleep(0.01)
print("ready", flush=True)
sys.stdin.readline()  # the test may take the broker away here
for i in range(n):
    aipulse.record(feature="tail", latency_ms=1.0, attributes={"i": i})
if flush_s:
    aipulse.flush(flush_s)  # with Kafka gone: times out, the tail stays in the producer
# no close(): the interpreter exits with the tail still queued
'''


def run_exit_app(tmp_path, bootstrap: str, topic: str, n: int, before_tail=lambda: None, flush_s: float = 0):
    import subprocess
    import sys

    script = tmp_path / "exit_app.py"
    script.write_text(EXIT_APP)
    proc = subprocess.Popen([sys.executable, str(script), bootstrap, topic, str(n), str(flush_s)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        before_tail()
        t0 = time.monotonic()
        out, err = proc.communicate("go\n", timeout=60)
        return proc.returncode, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_queued_tail_is_delivered_at_interpreter_exit(tmp_path, sdk_kafka):
    from .conftest import consume, create_topic

    topic = create_topic(sdk_kafka)
    n = 2_000
    code, err, _ = run_exit_app(tmp_path, sdk_kafka, topic, n)
    assert code == 0, err
    assert "Traceback" not in err, err
    records = consume(sdk_kafka, topic, n + 2, timeout=20)
    tail = [r for r in records if b'"feature":"tail"' in r.value]
    assert len(tail) == n, f"{len(tail)} of {n} queued events reached Kafka at exit; stderr: {err[-2000:]}"


@pytest.mark.fault
def test_exit_with_kafka_gone_prints_no_traceback_and_does_not_hang(tmp_path):
    from aipulse_local.kafka import start_kafka
    from aipulse_local.process import stop_pid

    broker = start_kafka(tmp_path / "kafka", port=0, partitions=1)
    try:
        code, err, took = run_exit_app(tmp_path, broker.bootstrap, "aipulse.exit", 200,
                                       before_tail=lambda: stop_pid(broker.pid), flush_s=0.5)
    finally:
        stop_pid(broker.pid)
    assert code == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert took < 15, f"the app took {took:.1f} s to exit with Kafka gone"


# ---------------------------------------------------------------- 2. the byte bound bounds memory


def held_after(emit, settle_s: float = 0.5) -> int:
    """Bytes still allocated (tracemalloc) after ``emit()`` ran and the sender had time."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        emit()
        time.sleep(settle_s)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


def kafka_down(**options):
    from aipulse_local.process import free_port

    import aipulse

    return aipulse.init(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic="t", service="bytes", user_salt="s",
                        connect_timeout_ms=200, warn_interval_s=3600, **options)


def test_big_events_are_not_held_beyond_the_byte_bound():
    import aipulse

    cap = 1024 * 1024
    kafka_down(max_queue_bytes=cap)
    try:
        held = held_after(lambda: [aipulse.record(feature="big", latency_ms=1.0, attributes={"doc": "x" * 1_000_000})
                                   for _ in range(120)])
        st = aipulse.stats()
        assert held < 3 * cap, f"{held / 1e6:.1f} MB held with a {cap} byte bound; stats say {st['queue_bytes']}"
        assert st["queue_bytes"] <= cap
        assert st["dropped"]["oversized"] == 120 and st["queue_events"] == 0
    finally:
        aipulse.close(timeout=0.5)


def test_the_buffer_counts_what_it_holds_in_wire_bytes():
    import aipulse

    cap = 1024 * 1024
    kafka_down(max_queue_bytes=cap, capture_text=True, max_text_chars=30_000)
    try:
        held = held_after(lambda: [aipulse.record(feature="text", latency_ms=1.0, prompt="y" * 30_000)
                                   for _ in range(120)])
        st = aipulse.stats()
        assert held < 3 * cap, f"{held / 1e6:.1f} MB held with a {cap} byte bound"
        # what stats() reports is what is held: the encoded events, at their wire size
        assert 0.9 * cap < st["queue_bytes"] <= cap
        assert st["queue_events"] * 30_000 < st["queue_bytes"] < st["queue_events"] * 31_000
        assert st["dropped"]["kafka_unavailable"] == 120 - st["queue_events"]
        assert st["emitted"] == st["sent"] + sum(st["dropped"].values()) + st["queued"]
    finally:
        aipulse.close(timeout=0.5)


def test_max_event_bytes_is_a_validated_option():
    from aipulse.config import DEFAULT_MAX_EVENT_BYTES, Config

    assert Config.load(env={}).max_event_bytes == DEFAULT_MAX_EVENT_BYTES
    assert Config.load(env={"AIPULSE_MAX_EVENT_BYTES": "4096"}).max_event_bytes == 4096
    with pytest.raises(ValueError, match="max_event_bytes must be positive"):
        Config.load(env={}, max_event_bytes=0)


# ---------------------------------------------------------------- 3. fork

FORK_APP = r'''
import os, sys, time
import aipulse

bootstrap, topic = sys.argv[1], sys.argv[2]
aipulse.init(kafka_bootstrap=bootstrap, topic=topic, service="fork-app", user_salt="s",
             linger_ms=3000, warn_interval_s=3600)
aipulse.record(feature="parent", latency_ms=1.0)
deadline = time.monotonic() + 30
# The parent's event is handed to its producer, which lingers with it for 3 s: a fork now
# leaves the child a producer with a batch in progress and threads that do not exist.
while aipulse.stats()["inflight_events"] < 1 and time.monotonic() < deadline:
    time.sleep(0.005)
pid = os.fork()
if pid == 0:
    t0 = time.monotonic()
    for _ in range(5):
        aipulse.record(feature="child", latency_ms=1.0)
    aipulse.flush(10)
    print(f"child delivered {aipulse.stats()['sent']} in {time.monotonic() - t0:.2f}", flush=True)
    sys.exit(0)  # a normal exit: atexit hooks and finalisers run in the child
t0 = time.monotonic()
_, status = os.waitpid(pid, 0)
print(f"child exit {os.waitstatus_to_exitcode(status)} after {time.monotonic() - t0:.2f}", flush=True)
aipulse.flush(10)
print(f"parent delivered {aipulse.stats()['sent']}", flush=True)
'''


def test_a_forked_child_never_touches_the_parents_producer(tmp_path, sdk_kafka):
    import re
    import subprocess
    import sys

    from .conftest import consume, create_topic

    topic = create_topic(sdk_kafka)
    script = tmp_path / "fork_app.py"
    script.write_text(FORK_APP)
    proc = subprocess.run([sys.executable, str(script), sdk_kafka, topic], capture_output=True, text=True,
                          timeout=90)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "child delivered 5" in out, out + err
    child_took = float(re.search(r"child exit 0 after ([0-9.]+)", out).group(1))
    assert child_took < 2.5, f"the child took {child_took} s to exit: it waited on the parent's producer\n{out}{err}"
    assert "parent delivered 1" in out, out + err
    records = consume(sdk_kafka, topic, 7, timeout=20)
    features = sorted(m.group(1) for m in (re.search(rb'"feature":"(\w+)"', r.value) for r in records) if m)
    assert features == [b"child"] * 5 + [b"parent"]


def test_shadow_runs_in_a_forked_child():
    import os

    import aipulse.rollout as rollout

    ran = threading.Event()
    rollout.shadow(lambda: "p", lambda: ran.set() or "c")   # the parent's pool now has a worker
    assert ran.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: the parent's pool threads do not exist here
        code = 1
        try:
            child_ran = threading.Event()
            rollout.shadow(lambda: "p", lambda: child_ran.set() or "c")
            code = 0 if child_ran.wait(5) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the shadow candidate never ran in the forked child"


def test_a_breaker_lock_held_at_fork_does_not_deadlock_the_child():
    import os

    import aipulse.reliability as reliability

    breaker = reliability.breaker_for("forkprov", "m1")
    held, release = threading.Event(), threading.Event()

    def hold():  # another thread of the app is inside the breaker registry when fork() happens
        with reliability._breakers_lock, breaker._lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert held.wait(5)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            done = threading.Event()

            def use():
                reliability.breaker_for("forkprov", "m2")
                breaker.failure()
                done.set()

            threading.Thread(target=use, daemon=True).start()
            code = 0 if done.wait(3) else 4
        finally:
            os._exit(code)
    release.set()
    t.join(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child deadlocked on a lock the parent's thread held"

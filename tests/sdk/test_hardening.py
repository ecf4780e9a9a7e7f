"""The SDK never hurts the app: one test per defect of issue 11 (each failed on the code before
its fix). Exit and fork run real processes against the real broker."""
from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

import aipulse
from aipulse.reliability import CircuitBreaker, FallbackChain, Step, call_with_timeout

from .conftest import consume

CLOSED_PORT = "127.0.0.1:1"  # nothing listens there: "Kafka down"


# ---------------------------------------------------------------- 1. exit


EXIT_APP = """
import sys, time, aipulse
aipulse.init(kafka_bootstrap=sys.argv[1], topic=sys.argv[2], service="exit-test", user_salt="s",
             stats_interval_s=0)
aipulse.record(feature="first", latency_ms=1.0)
deadline = time.monotonic() + 20
while not aipulse.stats()["kafka_connected"] and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(int(sys.argv[3]) - 1):
    aipulse.record(feature="tail", latency_ms=1.0)
# a normal exit, with the tail still queued: the SDK's exit hook must deliver it
"""


@pytest.mark.integration
def test_a_normal_exit_delivers_the_queued_tail_and_prints_nothing(sdk_kafka, topic):
    n = 3000
    res = subprocess.run([sys.executable, "-c", EXIT_APP, sdk_kafka, topic, str(n)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    assert res.stderr == "" and res.stdout == ""
    records = consume(sdk_kafka, topic, n, timeout=30)
    assert len(records) == n


# ---------------------------------------------------------------- 2. memory bound


def _held_mb(fn) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        time.sleep(0.5)  # the sender thread gets to look at what is queued
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / 1e6
    finally:
        tracemalloc.stop()


def test_the_byte_bound_bounds_memory_with_kafka_down():
    cap = 1024 * 1024
    aipulse.init(kafka_bootstrap=CLOSED_PORT, service="mem", user_salt="s", max_queue_bytes=cap,
                 connect_timeout_ms=200, warn_interval_s=3600, stats_interval_s=0)
    try:
        def huge():  # 120 events of 1 MB each (the issue's case; each its own string)
            for i in range(120):
                aipulse.record(feature="f", latency_ms=1.0, attributes={"blob": f"{i:07d}" + "x" * 999_993})

        def wide():  # 300 valid events of about 64 KB (64 attributes of 1000 characters)
            for i in range(300):
                aipulse.record(feature="f", latency_ms=1.0,
                               attributes={f"a{k}": f"{i:04d}{k:02d}" + "y" * 994 for k in range(64)})

        held = _held_mb(huge) + _held_mb(wide)
        st = aipulse.stats()
        assert held < 6 * cap / 1e6, f"{held:.1f} MB held with a {cap} byte cap"
        assert st["queue_bytes"] <= cap
        assert st["emitted"] == 420 == st["sent"] + sum(st["dropped"].values()) + st["queued"]
        assert st["dropped"]["invalid"] + st["dropped"]["kafka_unavailable"] >= 119
    finally:
        aipulse.close(timeout=0)


def test_an_event_larger_than_any_bound_is_dropped_as_oversized():
    aipulse.init(kafka_bootstrap=CLOSED_PORT, service="mem", user_salt="s", max_queue_bytes=64 * 1024,
                 connect_timeout_ms=200, warn_interval_s=3600, stats_interval_s=0)
    try:
        for _ in range(3):
            aipulse.record(feature="f", latency_ms=1.0, attributes={"blob": "z" * 100_000})
        st = aipulse.stats()
        assert st["dropped"]["oversized"] == 3 and st["queue_bytes"] == 0
    finally:
        aipulse.close(timeout=0)


def test_queue_bytes_are_the_serialized_size_once_known():
    aipulse.init(kafka_bootstrap=CLOSED_PORT, service="mem", user_salt="s", connect_timeout_ms=200,
                 warn_interval_s=3600, stats_interval_s=0)
    try:
        attrs = {f"k{i}": "v" * 900 for i in range(40)}
        aipulse.record(feature="f", latency_ms=1.0, attributes=attrs)
        deadline = time.monotonic() + 5
        while aipulse.stats()["queue_bytes"] and time.monotonic() < deadline:
            client = aipulse.get_client()
            value = client.prepare(("interaction", {"feature": "f", "latency_ms": 1.0, "attributes": attrs,
                                                    "event_id": "x" * 26, "ts": time.time()}))[1]
            if abs(aipulse.stats()["queue_bytes"] - len(value)) < 8:
                break
            time.sleep(0.02)
        assert abs(aipulse.stats()["queue_bytes"] - len(value)) < 8  # not the 512 + 48/attribute guess
    finally:
        aipulse.close(timeout=0)


# ---------------------------------------------------------------- 3. breaker hooks


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


FORK_RESULT_KEYS = ("candidate_ran", "timed", "sent", "elapsed_s", "stderr")


@pytest.mark.integration
def test_a_forked_child_is_fresh_and_exits_promptly(sdk, sdk_kafka, topic, tmp_path):
    from aipulse.rollout import shadow

    # The parent has used the shadow and timeout pools and has events in flight at the fork.
    shadow(lambda: "p", lambda: "c", feature="parent", wait=False)
    call_with_timeout(lambda: 1, 1.0)
    aipulse.record(feature="parent", latency_ms=1.0)
    assert aipulse.flush(10)
    for _ in range(2000):
        aipulse.record(feature="parent-burst", latency_ms=1.0)
    out = tmp_path / "child.json"
    err = tmp_path / "child.stderr"
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            fd = os.open(err, os.O_WRONLY | os.O_CREAT)
            os.dup2(fd, 2)
            t0 = time.monotonic()
            ran = threading.Event()
            shadow(lambda: "p", lambda: ran.set(), feature="child", wait=False)
            timed = call_with_timeout(lambda: "timed", 2.0)
            for _ in range(5):
                aipulse.record(feature="child", latency_ms=1.0)
            aipulse.flush(15)
            sent = aipulse.stats()["sent"]
            import atexit
            atexit._run_exitfuncs()  # what a normal exit runs: ours and kafka-python's hooks
            result = {"candidate_ran": ran.wait(5), "timed": timed, "sent": sent,
                      "elapsed_s": time.monotonic() - t0}
            out.write_text(json.dumps(result))
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    assert os.WEXITSTATUS(status) == 0
    result = json.loads(out.read_text())
    assert result["candidate_ran"] and result["timed"] == "timed"
    assert result["sent"] >= 5  # its own events (and its shadow run's), none of the parent's
    assert err.read_text() == ""
    assert result["elapsed_s"] < 5
    assert aipulse.flush(20)
    features = [json.loads(r.value)["feature"] for r in consume(sdk_kafka, topic, 2008, timeout=30)
                if json.loads(r.value)["kind"] == "interaction"]
    assert features.count("child") == 5 and features.count("parent-burst") == 2000


# ---------------------------------------------------------------- 6. the app's request is the app's


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

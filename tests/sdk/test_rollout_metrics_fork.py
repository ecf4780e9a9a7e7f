"""Rollout assignment and shadow runs; the SDK's Prometheus metrics; fork safety."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

import aipulse
import aipulse.metrics
import aipulse.rollout
from aipulse.rollout import Rollout, shadow

from .conftest import consume


def test_rollout_is_deterministic_monotonic_and_changeable_at_run_time():
    r = Rollout("reranker-v2", stage=5)
    users = [f"user-{i}" for i in range(20_000)]
    at5 = {u for u in users if r.assign(u).variant == "candidate"}
    assert 0.04 < len(at5) / len(users) < 0.06
    assert at5 == {u for u in users if Rollout("reranker-v2", stage=5).assign(u).variant == "candidate"}
    r.set_stage(20)
    at20 = {u for u in users if r.assign(u).variant == "candidate"}
    assert at5 <= at20 and 0.18 < len(at20) / len(users) < 0.22  # raising a stage only adds users
    assert r.assign("user-1").fields() == {"variant": r.assign("user-1").variant, "rollout_stage": 20.0}
    r.set_stage(100)
    assert all(r.assign(u).variant == "candidate" for u in users[:500])
    with pytest.raises(ValueError):
        r.set_stage(120)
    other = Rollout("another", stage=50)
    assert {u for u in users[:2000] if other.assign(u).variant == "candidate"} != \
        {u for u in users[:2000] if Rollout("reranker-v2", stage=50).assign(u).variant == "candidate"}


def test_rollout_fields_reach_the_interaction(captured):
    a = Rollout("prompt-v7", stage=50).assign("user-9")
    with aipulse.interaction(feature="search", **a.fields()):
        pass
    ev = captured.events[0]
    assert ev["variant"] == a.variant and ev["rollout_stage"] == 50.0


def test_shadow_records_the_pair_and_the_comparison(captured):
    got = shadow(lambda q: q.upper(), lambda q: q.upper() if q != "b" else "?", "a",
                 feature="search", model="gpt-4o", candidate_model="gpt-4o-mini",
                 compare=lambda prod, cand: prod == cand, wait=True)
    assert got == "A"
    shadow(lambda q: "prod", lambda q: "cand", "b", feature="search", compare=lambda p, c: 0.25)
    deadline = time.monotonic() + 5
    while len(captured.events) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    prod, cand, verdict, prod2, cand2, verdict2 = captured.events
    assert prod["shadow"] is False and cand["shadow"] is True and cand["shadow_of"] == prod["interaction_id"]
    assert cand["model"] == "gpt-4o-mini" and prod["model"] == "gpt-4o"
    assert verdict["kind"] == "evaluation" and verdict["source"] == "shadow" and verdict["correct"] is True
    assert verdict["interaction_id"] == cand["interaction_id"]
    assert verdict2["score"] == 0.25 and cand2["shadow_of"] == prod2["interaction_id"]


def test_metrics_exposition_is_valid_prometheus_text(tmp_path):
    aipulse.init(kafka_bootstrap="127.0.0.1:1", topic="t", service="m", user_salt="s", connect_timeout_ms=100)
    try:
        aipulse.record(feature="f", latency_ms=1.0)
        text = aipulse.metrics.exposition().decode()
    finally:
        aipulse.close(timeout=0.2)
    assert "aipulse_sdk_events_emitted_total 1.0" in text
    assert 'aipulse_sdk_events_dropped_total{reason="queue_full"} 0.0' in text
    assert "aipulse_sdk_kafka_connected 0.0" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed; text checked by hand above")
    page = tmp_path / "metrics.txt"
    page.write_text(text)
    res = subprocess.run([promtool, "check", "metrics"], stdin=page.open("rb"), capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.integration
def test_a_forked_child_sends_its_own_events(sdk, sdk_kafka, topic):
    parent_id = aipulse.record(feature="parent", latency_ms=1.0)
    assert aipulse.flush(10)
    pid = os.fork()
    if pid == 0:  # the child: the sender thread does not exist here until its first event
        code = 1
        try:
            ids = [aipulse.record(feature="child", latency_ms=1.0) for _ in range(5)]
            code = 0 if aipulse.flush(15) and aipulse.stats()["sent"] == 5 and len(set(ids)) == 5 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    aipulse.record(feature="parent-after", latency_ms=1.0)
    assert aipulse.flush(10)
    records = consume(sdk_kafka, topic, 7)
    features = sorted(r.value.decode().split('"feature":"')[1].split('"')[0] for r in records)
    assert features == ["child"] * 5 + ["parent", "parent-after"]
    assert parent_id.encode() in {r.key for r in records}

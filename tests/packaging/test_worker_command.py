"""``aipulse worker``: one worker from the environment, endpoints handed over by the composition root.

Started the way compose and a scaled-out deployment start it (``aipulse worker``, settings in
``AIPULSE_*``), but with no Kafka or ClickHouse address configured: the command finds the
running local stack's and hands them to the worker. Its own topic, database and consumer group
keep it apart from the session's worker.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from aipulse_local.kafka import ensure_topics
from aipulse_local.process import free_port
from aipulse_local.stack import worker_ready
from support import wait_for

pytestmark = pytest.mark.integration


def test_aipulse_worker_runs_from_the_environment(stack, stack_settings, kafka_bootstrap, ch, tmp_path):
    import aipulse

    tag = uuid.uuid4().hex[:8]
    topic, db = f"t-worker-cmd-{tag}", f"t_worker_cmd_{tag}"
    ensure_topics(kafka_bootstrap, {topic: 2, f"{topic}.dlq": 2})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPULSE_")}
    env.update({"AIPULSE_HOME": str(stack_settings.state_dir), "AIPULSE_TOPIC": topic, "AIPULSE_DLQ_TOPIC": f"{topic}.dlq",
                "AIPULSE_DATABASE": db, "AIPULSE_WORKER_GROUP": f"t-worker-cmd-{tag}",
                "AIPULSE_WORKER_METRICS_PORT": str(port), "AIPULSE_TOPIC_PARTITIONS": "2"})
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "aipulse_cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is None and worker_ready(f"127.0.0.1:{port}"), timeout=120,
                 what=f"`aipulse worker` to be ready (log {tmp_path / 'worker.log'})")
        aipulse.init(kafka_bootstrap=kafka_bootstrap, service=f"t-{tag}", topic=topic)
        try:
            ids = {aipulse.record(feature="chat", model="m", latency_ms=12.5, outcome="ok") for _ in range(20)}
            assert aipulse.flush(30), aipulse.stats()
        finally:
            aipulse.close()
        query = f"SELECT event_id FROM {db}.interactions FINAL"
        wait_for(lambda: {r[0] for r in ch.query(query).result_rows} == ids, timeout=90,
                 what="the worker started by `aipulse worker` to store the 20 events")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        ch.command(f"DROP DATABASE IF EXISTS {db}")
    assert proc.returncode is not None


def test_aipulse_worker_without_kafka_says_which_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPULSE_")}
    env["AIPULSE_HOME"] = str(tmp_path / "home")  # no local stack there
    out = subprocess.run([sys.executable, "-m", "aipulse_cli", "worker"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert "AIPULSE_KAFKA_BOOTSTRAP" in out.stderr and "Traceback" not in out.stderr, out.stderr

"""The worker's /metrics page: valid exposition (promtool, Prometheus' own checker) and the
self-metrics the pipeline-health dashboard and alerts read."""
from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest

from support import wait_for

pytestmark = pytest.mark.integration


def _page(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        return r.read().decode()


def test_worker_metrics_pass_promtool(stack):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    page = _page(stack["worker"]["address"])
    res = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr


def test_worker_exports_its_self_metrics(stack, kafka_bootstrap, service_name):
    import aipulse

    aipulse.init(kafka_bootstrap=kafka_bootstrap, service=service_name)
    try:
        for _ in range(20):
            aipulse.record(feature="f", model="m", latency_ms=5.0)
        aipulse.flush(30)
    finally:
        aipulse.close()
    names = ("aipulse_worker_consumed_total", "aipulse_worker_stored_total", "aipulse_worker_insert_seconds_bucket",
             "aipulse_worker_batch_size_bucket", "aipulse_worker_ready", "aipulse_worker_window_lag_seconds",
             "aipulse_worker_consumer_lag")
    page = wait_for(lambda: (p := _page(stack["worker"]["address"])) and all(n in p for n in names) and p,
                    timeout=60, what="the worker's self-metrics")
    for n in names:
        assert n in page, n

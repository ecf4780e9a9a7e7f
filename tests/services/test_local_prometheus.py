"""The local stack's Prometheus: started by `aipulse up` behind basic auth, it scrapes the real
worker (and an app's SDK metrics it is told about), and the Pipeline board's preview draws its
Prometheus panels from it: points, not placeholders."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry, start_http_server

from aipulse_alerts import basic_auth
from aipulse_grafana.prometheus_api import Prometheus, run_target
from aipulse_grafana.render import load_boards, render_board
from aipulse_local import prometheus
from aipulse_local.state import StackState
from support import wait_for

pytestmark = pytest.mark.integration

EVENTS = 300
MALFORMED = 20
SPREAD_S = 8.0            # the events go out over a few scrapes, so the rates have several points
# Insert failures: a labelled counter is exported from its first failure; the endpoint refuses none here.
MAY_BE_EMPTY = {"Insert failures"}


def _instant(prom_url: str, expr: str) -> float:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(basic_auth.request(f"{prom_url}/api/v1/query?{q}"), timeout=5) as r:
        result = json.loads(r.read())["data"]["result"]
    return sum(float(s["value"][1]) for s in result)


def test_prometheus_is_secure_and_scrapes_the_recorded_workers(stack, stack_settings):
    assert prometheus.binary(), "install prometheus (scripts/setup.sh)"
    comp = stack["prometheus"]
    assert comp["healthy"] and comp["address"].startswith("127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as err:   # nothing is served without the credential
        urllib.request.urlopen(f"http://{comp['address']}/api/v1/targets", timeout=5)
    assert err.value.code == 401
    workers = [c["address"] for c in StackState(stack_settings.state_dir).read().values() if c.get("kind") == "worker"]
    assert workers
    prom = Prometheus.connect(comp["url"])
    assert prom.scrape_interval_s == prometheus.SCRAPE_INTERVAL_S

    def worker_targets_up():
        with urllib.request.urlopen(basic_auth.request(comp["url"] + "/api/v1/targets"), timeout=5) as r:
            active = json.loads(r.read())["data"]["activeTargets"]
        return {t["labels"]["instance"] for t in active
                if t["labels"]["job"] == "aipulse-worker" and t["health"] == "up"} >= set(workers)
    wait_for(worker_targets_up, timeout=30, what="every recorded worker scraped (health up)")


def test_not_installed_is_one_line_and_the_stack_goes_on(stack_settings, monkeypatch, tmp_path):
    monkeypatch.setattr(prometheus, "binary", lambda: None)
    said = []
    state = StackState(tmp_path)                  # no prometheus recorded there
    assert prometheus.start_if_available(stack_settings, state, said.append) is None
    assert len(said) == 1 and "apt-get install prometheus" in said[0]


def test_pipeline_board_draws_its_prometheus_panels(stack, stack_settings, kafka_bootstrap, ch, service_name, tmp_path):
    import aipulse
    import aipulse.metrics
    from aipulse.reliability import CircuitBreaker

    url = stack["prometheus"]["url"]
    consumed_before = _instant(url, "sum(aipulse_worker_consumed_total)")
    dead_before = _instant(url, "sum(aipulse_worker_dead_lettered_total)")
    start = datetime.now(timezone.utc)

    # The app side: the SDK's metrics on a port of their own, told to the local Prometheus.
    registry = CollectorRegistry()
    aipulse.metrics.register(registry)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    target = f"test-{uuid.uuid4().hex[:6]}"
    prometheus.add_target(stack_settings, target, f"127.0.0.1:{server.server_address[1]}")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    aipulse.init(kafka_bootstrap=kafka_bootstrap, service=service_name)
    breaker = CircuitBreaker(f"{service_name}/model", failure_threshold=2, reset_timeout_s=1)
    try:
        # closed -> open twice: a counter series' first sample is not an increase, so the second
        # move is the one increase() sees (Grafana would draw the same).
        breaker.failure(), breaker.failure()
        wait_for(lambda: _instant(url, f'aipulse_sdk_circuit_transitions_total{{circuit="{breaker.name}"}}') >= 1,
                 timeout=30, what="the app's first transition scraped (the target is new to Prometheus)")
        time.sleep(1)                                  # past the reset timeout
        assert breaker.allow()                         # open -> half_open, a probe
        breaker.success()                              # half_open -> closed
        breaker.failure(), breaker.failure()           # closed -> open: 2
        assert breaker.transitions[("closed", "open")] == 2
        for i in range(EVENTS):
            aipulse.record(feature="chat", model="m", latency_ms=10.0 + i % 50)
            if i % (EVENTS // MALFORMED) == 0:
                producer.send(stack_settings.topic, key=f"{service_name}-{i}".encode(), value=b"not json")
            time.sleep(SPREAD_S / EVENTS)
        assert aipulse.flush(30)
        producer.flush()
        # Scraped: what we sent is in Prometheus's counters (they count every test's traffic too).
        wait_for(lambda: _instant(url, "sum(aipulse_worker_consumed_total)") >= consumed_before + EVENTS + MALFORMED
                 and _instant(url, "sum(aipulse_worker_dead_lettered_total)") >= dead_before + MALFORMED,
                 timeout=60, what="the worker's counters in Prometheus to include the sent messages")
        time.sleep(2 * prometheus.SCRAPE_INTERVAL_S)     # a few more points after the last increment
        end = datetime.now(timezone.utc)
        boards = dict(load_boards())
        board = boards["aipulse-pipeline"]
        drawn = render_board(ch, board, tmp_path / "pipeline.png", start, end, stack_settings.database,
                             prometheus=Prometheus.connect(url))
        reliability = render_board(ch, boards["aipulse-reliability"], tmp_path / "reliability.png", start, end,
                                   stack_settings.database, prometheus=Prometheus.connect(url))
        circuit_panel = next(p for p in boards["aipulse-reliability"]["panels"]
                             if p["title"] == "Circuit breaker state changes")
        _, moves = run_target(Prometheus.connect(url), circuit_panel["targets"][0], start, end)
    finally:
        aipulse.close()
        producer.close()
        prometheus.remove_target(stack_settings, target)
        server.shutdown()
        server.server_close()

    prom_titles = [p["title"] for p in board["panels"] if (p.get("datasource") or {}).get("type") == "prometheus"]
    assert len(prom_titles) >= 8
    assert all(drawn[t] is not None for t in prom_titles), drawn           # run, not placeholders
    empty = [t for t in prom_titles if not drawn[t] and t not in MAY_BE_EMPTY]
    assert not empty, f"Prometheus panels with no points: {empty} ({drawn})"
    # Points at the scrape's step over the range, for a series that exists all along (the worker's gauge).
    steps = (end - start).total_seconds() / prometheus.SCRAPE_INTERVAL_S
    assert drawn["Window lag"] >= steps / 2, (drawn["Window lag"], steps)
    assert (tmp_path / "pipeline.png").stat().st_size > 20_000
    assert reliability["Circuit breaker state changes"] > 0, reliability
    assert max(v for _, _, v in moves if v == v) > 0, moves     # the second closed -> open is seen


def test_render_command_finds_the_local_prometheus_and_names_a_bad_credential(stack, stack_settings, tmp_path,
                                                                              capsys):
    from aipulse_cli.main import main

    # The composition root hands the local Prometheus to the command: no placeholder is drawn.
    assert main(["grafana", "render", "--out", str(tmp_path / "ok"), "--from", "-2m"]) == 0
    out = capsys.readouterr().out
    assert "aipulse-pipeline.png" in out and "Prometheus panels not drawn" not in out, out
    assert (tmp_path / "ok" / "aipulse-pipeline.png").stat().st_size > 20_000

    address = stack["prometheus"]["address"]
    assert main(["grafana", "render", "--out", str(tmp_path / "bad"), "--from", "-2m",
                 "--prometheus-url", f"http://aipulse:wrong-password@{address}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused the credential (HTTP 401)" in err[0] and "wrong-password" not in err[0], err
    assert not (tmp_path / "bad").exists()

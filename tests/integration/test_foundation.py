"""Issue 2 end to end: SDK -> real Kafka broker -> Faust worker -> ClickHouse engine."""
from __future__ import annotations

import json
import random
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from support import wait_for

pytestmark = pytest.mark.integration


def _count(ch, table: str, service: str) -> int:
    return ch.query(f"SELECT count() FROM aipulse.{table} FINAL WHERE service = %(s)s", {"s": service}).result_rows[0][0]


def test_sdk_events_land_exactly_once(stack, kafka_bootstrap, ch, service_name):
    import aipulse

    rng = random.Random(7)
    aipulse.init(kafka_bootstrap=kafka_bootstrap, service=service_name, max_queue_events=50_000)
    try:
        sent = {}
        now = time.time()
        for i in range(10_000):
            latency = round(rng.lognormvariate(6, 0.8), 3)
            tin, tout = rng.randint(10, 4000), rng.randint(1, 800)
            cost = round(rng.uniform(0, 0.05), 6)
            eid = aipulse.record(feature=rng.choice(["chat", "search"]), model=rng.choice(["m-a", "m-b"]),
                                 latency_ms=latency, input_tokens=tin, output_tokens=tout, cost_usd=cost,
                                 ts=now - rng.uniform(0, 60), outcome="ok")
            sent[eid] = (latency, tin, tout, cost)
        ids = list(sent)
        for i in range(2_000):
            aipulse.feedback(ids[i], "thumbs_up" if i % 3 else "thumbs_down")
        assert aipulse.flush(60), aipulse.stats()
        stats = aipulse.stats()
        assert not any(stats["dropped"].values()), stats
    finally:
        aipulse.close()

    wait_for(lambda: _count(ch, "interactions", service_name) >= 10_000 and _count(ch, "feedback", service_name) >= 2_000,
             timeout=120, what="the worker to store 10,000 interactions and 2,000 feedback events")
    time.sleep(1.0)  # anything extra (a duplicate) would show up now
    rows = ch.query(
        "SELECT event_id, latency_ms, input_tokens, output_tokens, cost_usd FROM aipulse.interactions FINAL "
        "WHERE service = %(s)s", {"s": service_name}).result_rows
    assert len(rows) == 10_000
    assert {r[0] for r in rows} == set(sent)
    assert sum(r[1] for r in rows) == pytest.approx(sum(v[0] for v in sent.values()), rel=1e-12)
    assert sum(r[2] for r in rows) == sum(v[1] for v in sent.values())
    assert sum(r[3] for r in rows) == sum(v[2] for v in sent.values())
    assert round(sum(r[4] for r in rows), 6) == round(sum(v[3] for v in sent.values()), 6)
    assert _count(ch, "feedback", service_name) == 2_000
    # Not even before background merges: the worker skips replays and recent duplicates.
    raw_count = ch.query("SELECT count() FROM aipulse.interactions WHERE service = %(s)s", {"s": service_name}).result_rows[0][0]
    assert raw_count == 10_000


def _malformed(service: str, i: int) -> bytes:
    base = {"kind": "interaction", "event_id": f"{service}-bad-{i}", "ts": time.time(), "service": service,
            "latency_ms": 5}
    k = i % 5
    if k == 0:
        return b"{not json" + str(i).encode()
    if k == 1:
        return json.dumps({**base, "latency_ms": "fast"}).encode()         # wrong type
    if k == 2:
        return json.dumps({kk: v for kk, v in base.items() if kk != "event_id"}).encode()  # missing field
    if k == 3:
        return json.dumps({**base, "kind": "telemetry"}).encode()          # unknown kind
    return json.dumps({**base, "attributes": {"blob": "x" * 999}, "prompt": "p" * 300_000}).encode()  # oversized


def test_malformed_messages_go_to_the_dlq_with_a_reason(stack, stack_settings, kafka_bootstrap, ch, service_name):
    from aipulse_local.stack import status

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2_000_000)
    valid_ids = []
    for i in range(500):
        producer.send(stack_settings.topic, key=f"{service_name}-bad-{i}".encode(), value=_malformed(service_name, i))
        if i % 5 == 0:
            eid = uuid.uuid4().hex
            valid_ids.append(eid)
            ev = {"kind": "interaction", "event_id": eid, "ts": time.time(), "service": service_name,
                  "feature": "f", "model": "m", "latency_ms": 12.5}
            producer.send(stack_settings.topic, key=eid.encode(), value=json.dumps(ev).encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(stack_settings.dlq_topic, bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000, group_id=None,
                             fetch_max_bytes=8_000_000, max_partition_fetch_bytes=4_000_000)
    ours: dict[str, dict] = {}
    deadline = time.monotonic() + 90
    while len(ours) < 500 and time.monotonic() < deadline:
        for msg in consumer:
            key = (msg.key or b"").decode(errors="replace")
            if key.startswith(f"{service_name}-bad-"):
                ours[key] = {"headers": dict(msg.headers), "value": msg.value}
    consumer.close()
    assert len(ours) == 500, f"only {len(ours)} of 500 malformed messages reached the DLQ"
    for key, item in ours.items():
        reason = item["headers"].get("aipulse-reason", b"").decode()
        assert reason, key
        i = int(key.rsplit("-", 1)[1])
        assert item["value"] == _malformed_stable(service_name, i, item["value"])
    reasons = {int(k.rsplit("-", 1)[1]) % 5: v["headers"]["aipulse-reason"].decode() for k, v in ours.items()}
    assert reasons[0].startswith("not JSON")
    assert "latency_ms" in reasons[1]
    assert "event_id" in reasons[2]
    assert reasons[3].startswith("kind must be")
    assert "larger than" in reasons[4]

    wait_for(lambda: _count(ch, "interactions", service_name) == len(valid_ids), timeout=60,
             what="the valid events around the malformed ones")
    assert status(stack_settings)["worker"]["healthy"]


def _malformed_stable(service: str, i: int, got: bytes) -> bytes:
    # The malformed payloads embed time.time(); the original bytes are kept on the DLQ, so
    # compare the parts that do not depend on the clock.
    if i % 5 == 0:
        expected = b"{not json" + str(i).encode()
        return expected if got == expected else b"<differs>"
    return got if json.loads(got).get("service") == service else b"<differs>"


def test_duplicate_event_id_is_stored_once(stack, stack_settings, kafka_bootstrap, ch, service_name):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    ev = {"kind": "interaction", "event_id": f"{service_name}-dup", "ts": time.time(), "service": service_name,
          "latency_ms": 3}
    for _ in range(3):
        producer.send(stack_settings.topic, key=ev["event_id"].encode(), value=json.dumps(ev).encode())
        producer.flush()
        time.sleep(0.7)  # separate batches
    marker = {**ev, "event_id": f"{service_name}-marker"}
    producer.send(stack_settings.topic, key=ev["event_id"].encode(), value=json.dumps(marker).encode())
    producer.flush()
    producer.close()
    wait_for(lambda: ch.query("SELECT count() FROM aipulse.interactions WHERE event_id = %(e)s",
                              {"e": marker["event_id"]}).result_rows[0][0] == 1, timeout=60, what="the marker event")
    n = ch.query("SELECT count() FROM aipulse.interactions WHERE event_id = %(e)s", {"e": ev["event_id"]}).result_rows[0][0]
    assert n == 1


def test_clickhouse_connect_api_against_the_endpoint(stack, ch):
    """command, query, insert, parameters, settings and an error, exactly as with a server."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    table = f"aipulse.api_check_{uuid.uuid4().hex[:8]}"
    ch.command(f"CREATE TABLE {table} (id UInt32, name String, tags Map(String, String), v Nullable(Float64)) "
               "ENGINE = MergeTree ORDER BY id")
    try:
        summary = ch.insert(table, [[1, "a", {"x": "1"}, None], [2, "b", {}, 2.5]], column_names=["id", "name", "tags", "v"])
        assert summary.written_rows == 2
        assert ch.query(f"SELECT id, name, tags, v FROM {table} ORDER BY id").result_rows == [
            (1, "a", {"x": "1"}, None), (2, "b", {}, 2.5)]
        assert ch.command(f"SELECT count() FROM {table}") == 2
        assert ch.query("SELECT {n:UInt32} * 2", parameters={"n": 21}).result_rows == [(42,)]
        assert ch.query("SELECT getSetting('max_threads')", settings={"max_threads": 1}).result_rows == [(1,)]
        with pytest.raises(DatabaseError) as err:
            ch.query(f"SELECT no_such_column FROM {table}")
        assert "47" in str(err.value) or "UNKNOWN_IDENTIFIER" in str(err.value)
    finally:
        ch.command(f"DROP TABLE IF EXISTS {table}")


def test_endpoint_speaks_plain_http(stack, clickhouse_url):
    """Errors carry X-ClickHouse-Exception-Code and a non-200 status; queries in URL or body.

    The URL the stack gives carries its user (`aipulse status --json` prints it): plain HTTP
    clients send it as basic auth; without it only /ping answers.
    """
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    u = urllib.parse.urlsplit(clickhouse_url)
    assert u.username and u.password, "the local endpoint's URL must carry the stack's user"
    base = f"http://{u.hostname}:{u.port}"
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password)}".encode()).decode()}

    with urllib.request.urlopen(base + "/ping") as r:
        assert r.read() == b"Ok.\n"
    q = urllib.parse.quote("SELECT 1 + 1")
    with urllib.request.urlopen(urllib.request.Request(f"{base}/?query={q}", headers=auth)) as r:
        assert r.read().strip() == b"2"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/?query={q}")
    assert err.value.code == 403 and err.value.headers["X-ClickHouse-Exception-Code"] == "516"
    req = urllib.request.Request(base + "/", data=b"SELECT 'body' FORMAT TSV", method="POST", headers=auth)
    with urllib.request.urlopen(req) as r:
        assert r.read().strip() == b"body"
    req = urllib.request.Request(base + "/", data=b"SELEC 1", method="POST", headers=auth)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code != 200
    assert err.value.headers["X-ClickHouse-Exception-Code"] == "62"


def test_status_json_gives_the_clickhouse_url_with_its_user(stack, stack_settings, clickhouse_url):
    """Scripts keep working: `aipulse status --json` prints a URL clickhouse-connect can use as is."""
    import os
    import stat
    import subprocess
    import sys

    from aipulse_stream.storage.clickhouse import client_for_url

    if os.environ.get("AIPULSE_TEST_CLICKHOUSE_URL"):
        pytest.skip("a ClickHouse server, not the local endpoint")
    out = subprocess.run([sys.executable, "-m", "aipulse_cli", "status", "--json"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "AIPULSE_HOME": str(stack_settings.state_dir)})
    st = json.loads(out.stdout)
    assert st["clickhouse"]["url"] == clickhouse_url
    for key in ("url", "reader_url"):
        client = client_for_url(st["clickhouse"][key])
        assert client.command("SELECT 1") == 1
        client.close()
    for path in (stack_settings.state_dir / "stack.json", stack_settings.state_dir / "clickhouse" / "credentials.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for name in ("kafka", "clickhouse", "worker"):  # what `aipulse down` checks before signalling
        assert st[name]["started"] and st[name]["cmdline"], name


def test_poisonous_values_are_dead_lettered_not_counted(stack, stack_settings, kafka_bootstrap, ch, service_name):
    """Far-future or far-past ts, negative latency, NaN cost or tokens: DLQ with a reason, never counted."""
    from aipulse_stream.readside.query import metrics_query

    now = time.time()
    base = {"kind": "interaction", "ts": now, "service": service_name, "feature": "f", "model": "m", "latency_ms": 10}
    bad = {
        "future": {**base, "ts": now + 86400},
        "past": {**base, "ts": now - 400 * 86400},
        "negative": {**base, "latency_ms": -5},
    }
    raw_bad = {  # NaN is not JSON, but Python's json (and others) write it: the contract refuses it
        "nan-cost": json.dumps({**base, "cost_usd": float("nan")}),
        "nan-tokens": json.dumps({**base, "input_tokens": float("nan")}),
        "inf-latency": json.dumps({**base, "latency_ms": float("inf")}),
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for name, ev in bad.items():
        producer.send(stack_settings.topic, key=f"{service_name}-{name}".encode(),
                      value=json.dumps({**ev, "event_id": f"{service_name}-{name}"}).encode())
    for name, text in raw_bad.items():
        producer.send(stack_settings.topic, key=f"{service_name}-{name}".encode(),
                      value=text.replace('"kind"', f'"event_id": "{service_name}-{name}", "kind"', 1).encode())
    good = {**base, "event_id": f"{service_name}-good"}
    producer.send(stack_settings.topic, key=good["event_id"].encode(), value=json.dumps(good).encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(stack_settings.dlq_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=2000, group_id=None)
    reasons = {}
    deadline = time.monotonic() + 60
    while len(reasons) < 6 and time.monotonic() < deadline:
        for msg in consumer:
            key = (msg.key or b"").decode(errors="replace")
            if key.startswith(service_name):
                reasons[key[len(service_name) + 1:]] = dict(msg.headers)["aipulse-reason"].decode()
    consumer.close()
    assert set(reasons) == set(bad) | set(raw_bad), reasons
    assert "future" in reasons["future"] and "past" in reasons["past"]
    assert "latency_ms" in reasons["negative"] and "cost_usd" in reasons["nan-cost"]
    assert "input_tokens" in reasons["nan-tokens"] and "latency_ms" in reasons["inf-latency"]

    rows = wait_for(lambda: metrics_query(ch, stack_settings, ["service"], now - 3600, now + 3600,
                                          where={"service": [service_name]}), timeout=60, what="the good event's window")
    assert rows[0]["requests"] == 1
    assert rows[0]["latency_p99_ms"] == pytest.approx(10, rel=0.01)
    assert rows[0]["cost_usd"] == 0

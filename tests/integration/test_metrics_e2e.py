"""Issue 3 end to end: a generated stream through the real broker and worker, read back with
`aipulse metrics --json`, equals the exact figures computed from the raw events; and stays
equal when the worker is killed with SIGKILL at random moments and restarted.

Each test runs its own worker on its own topic (so the watermark of its partitions is its
own) and relabels the generated events with a unique prefix (services and ids).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from support import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metrics"))
import gen  # noqa: E402  (the metrics suite's deterministic generator)

pytestmark = pytest.mark.integration
PARTITIONS = 4
GROUPINGS = (["service"], ["service", "feature", "model", "variant"], ["model"], ["variant", "feature"])


def relabel(triples, prefix: str):
    out = []
    for p, o, ev in triples:
        upd = {"service": f"{prefix}-{ev.service}", "event_id": f"{prefix}-{ev.event_id}"}
        if ev.interaction_id:
            upd["interaction_id"] = f"{prefix}-{ev.interaction_id}"
        out.append((p, o, ev.model_copy(update=upd)))
    return out


class TopicWorker:
    """A worker of its own (topic, consumer group) in the session's stack; kill and restart it."""

    def __init__(self, settings, kafka_bootstrap: str):
        from kafka.admin import KafkaAdminClient, NewTopic

        tag = uuid.uuid4().hex[:8]
        self.topic = f"aipulse.test.{tag}"
        self.group = f"aipulse-test-{tag}"
        self.name = f"worker-{tag}"
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        admin.create_topics([NewTopic(self.topic, PARTITIONS, 1)])
        admin.close()
        self.settings = settings.model_copy(update={"topic": self.topic, "worker_group": self.group})
        self.env = {"AIPULSE_TOPIC": self.topic, "AIPULSE_WORKER_GROUP": self.group}
        self.info = None

    def start(self):
        from aipulse_local.stack import start_worker

        self.info = start_worker(self.settings, name=self.name, extra_env=self.env)
        return self.info

    def kill(self):
        from aipulse_local.stack import stop_component

        return stop_component(self.settings, self.name, kill=True)

    def stop(self):
        from aipulse_local.stack import stop_component

        stop_component(self.settings, self.name)


def produce(bootstrap: str, topic: str, triples) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=20, batch_size=256 * 1024, compression_type="lz4")
    for p, _o, ev in triples:  # the generator's partition: the join and lateness follow it
        producer.send(topic, partition=p, key=(ev.interaction_id or ev.event_id).encode(),
                      value=ev.model_dump_json(exclude_none=True).encode(),
                      timestamp_ms=int(ev.ts.timestamp() * 1000))
    producer.flush(120)
    producer.close()


def stored_ids(ch, prefix: str) -> int:
    return ch.query(
        "SELECT (SELECT count() FROM aipulse.interactions FINAL WHERE startsWith(event_id, %(p)s))"
        " + (SELECT count() FROM aipulse.feedback FINAL WHERE startsWith(event_id, %(p)s))"
        " + (SELECT count() FROM aipulse.evaluations FINAL WHERE startsWith(event_id, %(p)s))",
        {"p": prefix + "-"}).result_rows[0][0]


def cli_metrics(group_by, start, end, prefix: str) -> list[dict]:
    services = [f"{prefix}-{s}" for s in gen.SERVICES]
    args = [sys.executable, "-m", "aipulse_stream.cli", "metrics", "--group-by", ",".join(group_by),
            "--from", start, "--to", end, "--json"]
    for s in services:
        args += ["--where", f"service={s}"]
    out = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_exact(settings, triples, prefix: str) -> None:
    from aipulse_stream.readside.exact import assert_metrics_match, exact_metrics

    times = [ev.ts.timestamp() for _p, _o, ev in triples]
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(times) - 3600))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(times) + 3600))
    services = [f"{prefix}-{s}" for s in gen.SERVICES]
    for group_by in GROUPINGS:
        got = cli_metrics(group_by, start, end, prefix)
        want = exact_metrics(triples, settings, group_by, start=min(times) - 3600, end=max(times) + 3600,
                             where={"service": services})
        assert_metrics_match(got, want, group_by)


def drain(ch, prefix: str, triples, timeout: float) -> None:
    expected = len({ev.event_id for _p, _o, ev in triples})
    wait_for(lambda: stored_ids(ch, prefix) >= expected, timeout=timeout,
             what=f"{expected} raw events with prefix {prefix}")


def wait_acked(worker: TopicWorker, triples, timeout: float = 120) -> None:
    """The worker has counted every offset: its acked offsets reach each partition's last block."""
    import urllib.request

    def caught_up():
        body = urllib.request.urlopen(f"http://{worker.info['address']}/metrics", timeout=2).read().decode()
        consumed = sum(float(line.split()[-1]) for line in body.splitlines()
                       if line.startswith("aipulse_worker_consumed_total"))
        return consumed >= len(triples)
    wait_for(caught_up, timeout=timeout, what="the worker to consume the whole stream")


def test_generated_stream_matches_exact_figures(stack, stack_settings, kafka_bootstrap, ch):
    prefix = f"x{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(int(os.environ.get("AIPULSE_TEST_EVENTS", "200000")), seed=11,
                                   spec=gen.Spec(partitions=PARTITIONS)), prefix)
    n_interactions = sum(1 for *_x, ev in triples if ev.kind == "interaction")
    assert n_interactions >= 200_000 or "AIPULSE_TEST_EVENTS" in os.environ
    worker = TopicWorker(stack_settings, kafka_bootstrap)
    worker.start()
    try:
        started = time.monotonic()
        produce(kafka_bootstrap, worker.topic, triples)
        drain(ch, prefix, triples, timeout=600)
        wait_acked(worker, triples)
        print(f"\n{len(triples)} events ({n_interactions} interactions) produced and stored in "
              f"{time.monotonic() - started:.1f}s")
        time.sleep(2 * stack_settings.batch_max_wait_s + 1)  # the last window rows
        check_exact(stack_settings, triples, prefix)
    finally:
        worker.stop()


@pytest.mark.fault
def test_sigkill_worker_five_times_totals_unchanged(stack, stack_settings, kafka_bootstrap, ch):
    prefix = f"k{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(60_000, seed=23, spec=gen.Spec(partitions=PARTITIONS)), prefix)
    worker = TopicWorker(stack_settings, kafka_bootstrap)
    worker.start()
    rng = random.Random(5)
    kills = []
    try:
        # Produce in slices so that the kills land while the worker is consuming.
        slices = 6
        size = len(triples) // slices + 1
        for i in range(slices):
            produce(kafka_bootstrap, worker.topic, triples[i * size:(i + 1) * size])
            if i < 5:
                time.sleep(rng.uniform(0.2, 2.5))
                kills.append(worker.kill())
                worker.start()
        drain(ch, prefix, triples, timeout=300)
        time.sleep(2 * stack_settings.batch_max_wait_s + 1)
        assert len(kills) == 5 and all(kills)
        check_exact(stack_settings, triples, prefix)
        raw = ch.query("SELECT count() FROM aipulse.interactions WHERE startsWith(event_id, %(p)s)",
                       {"p": prefix + "-"}).result_rows[0][0]
        final = ch.query("SELECT count() FROM aipulse.interactions FINAL WHERE startsWith(event_id, %(p)s)",
                         {"p": prefix + "-"}).result_rows[0][0]
        print(f"\nkilled pids {kills}; raw rows {raw}, distinct {final}")
        assert raw == final  # not even a transient duplicate row
    finally:
        worker.stop()

"""A worker frozen while the consumer group moves its partitions, then resumed (issue 10).

Two workers share a 6-partition topic while a known stream flows (~60k events: interactions,
feedback, evaluations). One of them is frozen (SIGSTOP) for 20 s, longer than the session
timeout, so the group hands its partitions to the other worker, then resumed (SIGCONT), twice:

- ``test_worker_frozen_from_outside_twice``: the issue's reproduction -- the test stops the
  process from outside at whatever it is doing while the stream flows;
- ``test_worker_frozen_in_its_insert_during_a_rebalance``: the worker freezes itself between
  two raw-table inserts of a batch (aipulse_stream.crashpoints' pause switch), so that it
  resumes holding a half-written batch computed under a generation it no longer owns.

Afterwards: every event stored once, window metrics exact, both workers healthy and holding
partitions (the group must not wedge), nothing left unprocessed.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from fault.helpers import (TopicWorkers, drain_progress, gen, gen_services, group_assignment, produce,
                           raw_counts, relabel, row, wait_exact)
from support import wait_for

from aipulse_stream.crashpoints import PAUSE_ENV

pytestmark = [pytest.mark.integration, pytest.mark.fault]
long_only = pytest.mark.skipif(os.environ.get("AIPULSE_FAULT_LONG") != "1", reason="long scenario: set AIPULSE_FAULT_LONG=1")
PARTITIONS = 6
FROZEN_S = 20.0
SMALL_BATCHES = {"AIPULSE_BATCH_MAX_EVENTS": "500", "AIPULSE_BATCH_MAX_WAIT_S": "0.2"}


def state_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1]
    except FileNotFoundError:
        return "gone"


def test_worker_frozen_from_outside_twice(stack, stack_settings, kafka_bootstrap, ch):
    prefix = f"y{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(40_000, seed=59, spec=gen.Spec(partitions=PARTITIONS)), prefix)
    group = TopicWorkers(stack_settings, kafka_bootstrap, partitions=PARTITIONS)
    n = len(triples)
    slices = 12
    cuts = [n * i // slices for i in range(slices + 1)]
    sent = threading.Event()
    errors: list[BaseException] = []

    def flow():  # the stream keeps flowing through both freezes (~50 s)
        try:
            for i in range(slices):
                produce(kafka_bootstrap, group.topic, triples[cuts[i]:cuts[i + 1]])
                time.sleep(4.0)
        except BaseException as err:  # reported by the test thread
            errors.append(err)
        finally:
            sent.set()

    try:
        group.start("a")
        frozen = group.start("b")
        producer = threading.Thread(target=flow, name="produce", daemon=True)
        producer.start()
        wait_for(lambda: group.metric("aipulse_worker_consumed_total", "b") > 0, timeout=60,
                 what="worker b to consume its first batch")
        for _ in range(2):
            os.kill(frozen["pid"], signal.SIGSTOP)
            time.sleep(FROZEN_S)           # > session timeout: the group moves b's partitions to a
            os.kill(frozen["pid"], signal.SIGCONT)
            # back in the group (a rebalance hands it partitions again) before the next freeze
            wait_for(lambda: len([m for m in group_assignment(kafka_bootstrap, group.group, group.topic) if m]) == 2,
                     timeout=60, what="both workers to hold partitions after the resume")
            time.sleep(3.0)
        fault_end = time.monotonic()
        sent.wait(180)
        assert not errors, errors
        caught_up = drain_progress(ch, prefix, triples, idle_s=60, settings=group.settings,
                                   logs=[i["log"] for i in group.workers.values()])
        diffs = wait_exact(group.settings, triples, gen_services(prefix))
        rows, distinct = raw_counts(ch, prefix, group.settings)
        alive = group.healthy()
        members = group_assignment(kafka_bootstrap, group.group, group.topic)
        row("frozen worker: SIGSTOP from outside 2x20s while the stream flows", sent=n, stored=distinct,
            duplicates=rows - distinct, metric_differences=len(diffs), recovery_s=max(0.0, caught_up - fault_end),
            note=f"workers at the end: {sorted(alive)}; partitions per member: {members}")
        assert not diffs, "\n".join(diffs[:30])
        assert distinct == len({ev.event_id for *_x, ev in triples})
        assert rows == distinct
        assert len(alive) == 2 and all(alive.values()), alive
        assert len(members) == 2 and all(members), f"a member holds no partition: {members}"
    finally:
        for info in group.workers.values():
            try:
                os.kill(info["pid"], signal.SIGCONT)
            except ProcessLookupError:
                pass
        group.stop()


@long_only
def test_worker_frozen_in_its_insert_during_a_rebalance(stack, stack_settings, kafka_bootstrap, ch):
    prefix = f"z{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(40_000, seed=53, spec=gen.Spec(partitions=PARTITIONS)), prefix)
    group = TopicWorkers(stack_settings, kafka_bootstrap, partitions=PARTITIONS, extra_env=SMALL_BATCHES)
    try:
        group.start("a")
        group.env[PAUSE_ENV] = "after_raw_insert:interactions@3,after_raw_insert:interactions@12"
        frozen = group.start("b")
        del group.env[PAUSE_ENV]
        n = len(triples)
        cuts = [0, n // 4, n // 2, 3 * n // 4, n]
        freezes = 0
        for i in range(4):
            produce(kafka_bootstrap, group.topic, triples[cuts[i]:cuts[i + 1]])
            try:
                wait_for(lambda: state_of(frozen["pid"]) == "T", timeout=30, what="worker b to freeze")
            except BaseException:
                continue  # b got no batch of its own in this slice: no freeze this time
            freezes += 1
            time.sleep(FROZEN_S)            # > session timeout: the group moves b's partitions to a
            os.kill(frozen["pid"], signal.SIGCONT)
        fault_end = time.monotonic()
        caught_up = drain_progress(ch, prefix, triples, idle_s=60, settings=group.settings,
                                   logs=[i["log"] for i in group.workers.values()])
        diffs = wait_exact(group.settings, triples, gen_services(prefix))
        rows, distinct = raw_counts(ch, prefix, group.settings)
        alive = group.healthy()
        row("frozen worker: SIGSTOP in its insert during a rebalance", sent=n, stored=distinct,
            duplicates=rows - distinct, metric_differences=len(diffs), recovery_s=caught_up - fault_end,
            note=f"{freezes} freezes of {FROZEN_S:.0f}s; workers at the end: {sorted(alive)}")
        assert freezes >= 1, "worker b never froze: the scenario did not run"
        assert not diffs, "\n".join(diffs[:30])
        assert distinct == len({ev.event_id for *_x, ev in triples})
        assert rows == distinct
        assert len(alive) == 2 and all(alive.values()), alive
    finally:
        for info in group.workers.values():
            try:
                os.kill(info["pid"], signal.SIGCONT)
            except ProcessLookupError:
                pass
        group.stop()

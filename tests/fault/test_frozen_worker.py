"""A worker frozen in its insert while the consumer group moves its partitions, then resumed.

Two workers share a 6-partition topic while a known stream flows. One of them freezes itself
(SIGSTOP, via aipulse_stream.crashpoints' pause switch) between two raw-table inserts of a
batch, twice; each time the group's session timeout hands its partitions to the other worker,
and the frozen one is resumed 20 s later, holding a half-written batch computed under a
generation it no longer owns. Afterwards: every event stored once, window metrics exact, both
workers consuming (the group must not wedge), nothing left unprocessed.
"""
from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from fault.helpers import TopicWorkers, drain, gen, gen_services, produce, raw_counts, relabel, row, wait_exact
from support import wait_for

from aipulse_stream.crashpoints import PAUSE_ENV

pytestmark = [
    pytest.mark.integration, pytest.mark.fault,
    # ~2.5 min and it has not yet reproduced the wedge of issue 10 here: kept out of the default
    # run until the batch source lands; AIPULSE_FAULT_LONG=1 runs it.
    pytest.mark.skipif(os.environ.get("AIPULSE_FAULT_LONG") != "1", reason="long scenario: set AIPULSE_FAULT_LONG=1"),
]
PARTITIONS = 6
FROZEN_S = 20.0
SMALL_BATCHES = {"AIPULSE_BATCH_MAX_EVENTS": "500", "AIPULSE_BATCH_MAX_WAIT_S": "0.2"}


def state_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1]
    except FileNotFoundError:
        return "gone"


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
        caught_up = drain(ch, prefix, triples, timeout=150, settings=group.settings)
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

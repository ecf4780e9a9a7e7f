"""Scenario 1: the worker SIGKILLed at five random moments of one run and restarted each time;
raw rows (by event_id, even before merges) and window metrics equal the exact totals."""
from __future__ import annotations

import random
import time
import uuid

import pytest

from fault.helpers import (PARTITIONS, TopicWorkers, drain, gen, gen_services, produce, raw_counts, relabel, row,
                           wait_exact)

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def test_sigkill_worker_five_times_totals_unchanged(stack, stack_settings, kafka_bootstrap, ch):
    prefix = f"k{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(60_000, seed=23, spec=gen.Spec(partitions=PARTITIONS)), prefix)
    worker = TopicWorkers(stack_settings, kafka_bootstrap)
    worker.start()
    rng = random.Random(5)
    kills, restarts = [], []
    try:
        # Produce in slices so that the kills land while the worker is consuming.
        slices = 6
        size = len(triples) // slices + 1
        for i in range(slices):
            produce(kafka_bootstrap, worker.topic, triples[i * size:(i + 1) * size])
            if i < 5:
                time.sleep(rng.uniform(0.2, 2.5))
                kills.append(worker.kill())
                t0 = time.monotonic()
                worker.start()
                restarts.append(time.monotonic() - t0)
        fault_end = time.monotonic()
        caught_up = drain(ch, prefix, triples, timeout=150, settings=worker.settings)
        assert len(kills) == 5 and all(kills)
        diffs = wait_exact(worker.settings, triples, gen_services(prefix))
        rows, distinct = raw_counts(ch, prefix, worker.settings)
        row("1 worker SIGKILL x5", sent=len(triples), stored=distinct, duplicates=rows - distinct,
            metric_differences=len(diffs), recovery_s=caught_up - fault_end,
            note=f"restart to ready {min(restarts):.1f}-{max(restarts):.1f}s; killed pids {kills}")
        assert not diffs, "\n".join(diffs[:30])
        assert distinct == len({ev.event_id for *_x, ev in triples})
        assert rows == distinct  # not even a transient duplicate row
    finally:
        worker.stop()

"""Scenario 2: two workers in one consumer group on a 6-partition topic, a third added
mid-stream, then one removed: partitions move between live workers (rebalancing) while
events flow; nothing lost, nothing doubled, window metrics exact."""
from __future__ import annotations

import time
import uuid

import pytest

from fault.helpers import TopicWorkers, drain_progress, gen, gen_services, produce, raw_counts, relabel, row, wait_exact

pytestmark = [pytest.mark.integration, pytest.mark.fault]
PARTITIONS = 6


def test_scale_out_and_in_during_the_stream(stack, stack_settings, kafka_bootstrap, ch):
    prefix = f"r{uuid.uuid4().hex[:6]}"
    triples = relabel(gen.generate(60_000, seed=31, spec=gen.Spec(partitions=PARTITIONS)), prefix)
    group = TopicWorkers(stack_settings, kafka_bootstrap, partitions=PARTITIONS)
    try:
        group.start("a")
        group.start("b")
        n = len(triples)
        cuts = [0, n // 3, 2 * n // 3, n]
        produce(kafka_bootstrap, group.topic, triples[cuts[0]:cuts[1]])
        time.sleep(2.0)
        group.start("c")                    # scale out mid-stream: a rebalance over 3 members
        produce(kafka_bootstrap, group.topic, triples[cuts[1]:cuts[2]])
        time.sleep(2.0)
        group.stop("a")                     # scale in: a's partitions move to b and c
        fault_end = time.monotonic()
        produce(kafka_bootstrap, group.topic, triples[cuts[2]:cuts[3]])
        # Fails when no new event is stored for 60 s (a stuck group), not after a fixed total:
        # a loaded machine only makes the drain slower. The workers' logs (kept) are shown.
        logs = [i["log"] for i in group.workers.values()] + [group.settings.state_dir / f"{group._full('a')}.log"]
        caught_up = drain_progress(ch, prefix, triples, idle_s=60, settings=group.settings, logs=logs)
        diffs = wait_exact(group.settings, triples, gen_services(prefix))
        rows, distinct = raw_counts(ch, prefix, group.settings)
        alive = group.healthy()
        row("2 rebalance: 2 workers, +1, -1 (6 partitions)", sent=n, stored=distinct, duplicates=rows - distinct,
            metric_differences=len(diffs), recovery_s=caught_up - fault_end,
            note=f"workers at the end: {sorted(alive)}")
        assert not diffs, "\n".join(diffs[:30])
        assert distinct == len({ev.event_id for *_x, ev in triples})
        assert rows == distinct
        assert len(alive) == 2 and all(alive.values())
    finally:
        group.stop()

"""Issue 3 end to end: a generated stream through the real broker and worker, read back with
`aipulse metrics --json`, equals the exact figures computed from the raw events.

The worker runs on its own topic (so the watermark of its partitions is its own) and the
generated events are relabelled with a unique prefix (services and ids). The helpers live in
tests/fault/helpers.py, shared with the fault suite (which holds the SIGKILL x5 test).
"""
from __future__ import annotations

import os
import time
import uuid

import pytest

from fault.helpers import PARTITIONS, TopicWorker, check_exact, drain, gen, produce, relabel, wait_acked

pytestmark = pytest.mark.integration


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
        drain(ch, prefix, triples, timeout=600, settings=worker.settings)
        wait_acked(worker, triples)
        print(f"\n{len(triples)} events ({n_interactions} interactions) produced and stored in "
              f"{time.monotonic() - started:.1f}s")
        time.sleep(2 * stack_settings.batch_max_wait_s + 1)  # the last window rows
        check_exact(worker.settings, triples, prefix)
    finally:
        worker.stop()

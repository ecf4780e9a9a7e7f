"""A stream that pauses is committed to its last complete block: the worker waits for the
last batch's writes and acks them without waiting for a next record (sources/kafka_batch.py).

Before this was fixed, the batch that completed a block was acked only when another record
arrived: a paused stream kept its consumer lag and committed nothing, and a worker restarted
then replayed the whole block (seen as the ClickHouse-outage test's missing first commit).
The worker's /metrics then say the same: nothing unread, the open block's records uncommitted."""
from __future__ import annotations

import uuid

import pytest

from fault.helpers import TopicWorkers, committed_offsets, gen, produce, relabel, stored_ids, tail
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def test_a_paused_stream_commits_its_last_complete_block(stack_settings, kafka_bootstrap, ch):
    worker = TopicWorkers(stack_settings, kafka_bootstrap, partitions=1)
    block = worker.settings.offset_block
    prefix = f"i{uuid.uuid4().hex[:6]}"
    # Two blocks and one record: that last record closes block 1, so whatever the batching,
    # the batch holding it is the last one and makes offsets up to 2 * block - 1 ackable.
    triples = relabel(gen.generate(2 * block, seed=7, spec=gen.Spec(partitions=1)), prefix)[: 2 * block + 1]
    assert [o for _p, o, _ev in triples] == list(range(2 * block + 1))
    worker.start()
    try:
        produce(kafka_bootstrap, worker.topic, triples)
        wait_for(lambda: stored_ids(ch, prefix, worker.settings) >= len(triples), timeout=90,
                 what="every event stored")
        try:
            # Nothing more is sent: the commit must come from the pause itself.
            wait_for(lambda: committed_offsets(kafka_bootstrap, worker.group, worker.topic).get(0) == 2 * block,
                     timeout=30, what=f"offset {2 * block} committed after the stream paused")
        except BaseException:
            print("--- worker log (last lines)\n" + tail(worker.info["log"], 60))
            raise
        # Its lag gauges: nothing left unread; one offset (the open block's record) uncommitted.
        wait_for(lambda: worker.metric("aipulse_worker_unread_offsets") == 0
                 and worker.metric("aipulse_worker_consumer_lag") == 1, timeout=10,
                 what="unread 0 and uncommitted 1 on the worker's /metrics")
    finally:
        worker.stop()

"""The private names of faust-streaming that the batch source (sources/kafka_batch.py) relies on.

The source replaces ``Consumer._drain_messages`` and acks into ``Consumer._acked``; Faust's commit
timer turns a contiguous run of acked offsets into a commit (``_new_offset``). These tests fail
when an upgrade renames, removes or changes one of them: read the new source before re-pinning.
"""
from __future__ import annotations

import inspect
from importlib.metadata import version

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from aipulse_stream.app import AipulseApp
from aipulse_stream.sources.kafka_batch import BatchConsumer, BatchTransport

PINNED = "0.15.3"


def test_the_pinned_version_is_installed():
    assert version("faust-streaming") == PINNED


def test_the_consumer_methods_we_use_or_replace_exist_with_their_signatures():
    C = faust_consumer.Consumer
    assert list(inspect.signature(C._drain_messages).parameters) == ["self", "fetcher"]
    assert list(inspect.signature(C._wait_next_records).parameters) == ["self", "timeout"]
    assert list(inspect.signature(C._new_offset).parameters) == ["self", "tp"]
    assert list(inspect.signature(C.perform_seek).parameters) == ["self"]
    assert list(inspect.signature(C._commit_offsets).parameters) == ["self", "offsets", "start_new_transaction"]
    assert list(inspect.signature(C.on_partitions_revoked).parameters) == ["self", "revoked"]
    assert inspect.iscoroutinefunction(C._wait_next_records)
    assert inspect.iscoroutinefunction(C.on_partitions_revoked)
    # The fetcher service still calls the consumer's _drain_messages.
    assert "await consumer._drain_messages(self)" in inspect.getsource(faust_consumer.Fetcher)
    # The aiokafka transport still names its consumer class on the transport.
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    assert issubclass(BatchConsumer, faust_aiokafka.Consumer)
    assert BatchTransport.Consumer is BatchConsumer
    # App builds its transport in _new_transport (which AipulseApp overrides).
    assert "_new_transport" in vars(faust.App)
    assert "_new_transport" in vars(AipulseApp)


def test_the_consumer_state_we_write_is_still_there():
    src = inspect.getsource(faust_consumer.Consumer.__init__)
    for name in ("self._acked = ", "self._read_offset = ", "self._committed_offset = "):
        assert name in src, name
    # Revoking drops Faust's own per-partition state (we drop ours beside it).
    revoke = inspect.getsource(faust_consumer.Consumer.on_partitions_revoked)
    assert "self._acked.pop(tp" in revoke and "self._committed_offset.pop(tp" in revoke


def test_new_offset_commits_a_contiguous_run_of_acked_offsets():
    """Faust's commit rule that ack_upto feeds: acked 5..9 after committed 5 -> commit 10."""

    class Probe:
        _new_offset = faust_consumer.Consumer._new_offset

        def __init__(self):
            from collections import defaultdict

            from intervaltree import IntervalTree

            self._acked = defaultdict(list)
            self._acked_index = defaultdict(set)
            self._gap = defaultdict(IntervalTree)
            self._committed_offset = defaultdict(lambda: None)

    p = Probe()
    tp = faust.types.TP("t", 0)
    p._committed_offset[tp] = 5
    p._acked[tp].extend(range(5, 10))
    assert p._new_offset(tp) == 10
    p._acked[tp].extend(range(12, 15))  # a hole at 10, 11: nothing committable
    p._committed_offset[tp] = 10
    assert p._new_offset(tp) is None


def test_the_heartbeat_the_group_lease_listens_to():
    """sources/kafka_batch.py's LeaseConsumerThread wraps the coordinator's ``_do_heartbeat``
    (an instance attribute, looked up at every round of the heartbeat routine) once Faust's
    consumer thread has created the aiokafka consumer in ``on_start``."""
    from aiokafka.consumer import group_coordinator

    from aipulse_stream.sources.kafka_batch import LeaseConsumerThread

    routine = inspect.getsource(group_coordinator.GroupCoordinator._heartbeat_routine)
    assert "await self._do_heartbeat()" in routine
    assert inspect.iscoroutinefunction(group_coordinator.GroupCoordinator._do_heartbeat)
    assert "self._consumer = self._create_consumer(" in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.on_start)
    assert issubclass(LeaseConsumerThread, faust_aiokafka.AIOKafkaConsumerThread)
    assert "def _new_consumer_thread" in inspect.getsource(faust_aiokafka.Consumer)

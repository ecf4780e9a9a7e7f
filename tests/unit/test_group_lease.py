"""The batch source's group lease (sources/kafka_batch.py): a worker that was frozen past its
session timeout treats every partition as lost before writing anything more."""
from __future__ import annotations

import time

from faust.types import TP

from aipulse_stream.sources.kafka_batch import LEASE_MARGIN_S, BatchConsumer


class Handler:
    def __init__(self):
        self.revoked: list[set[int]] = []

    def revoke(self, partitions):
        self.revoked.append(set(partitions))


class App:
    def __init__(self):
        self.batch_handler = Handler()


class Probe:
    """The attributes lease_valid() and renew_lease() use, without a broker."""

    lease_valid = BatchConsumer.lease_valid
    renew_lease = BatchConsumer.renew_lease
    _lost = False

    def __init__(self, session_timeout: float = 10.0):
        self.app = App()
        self._alive_at = time.monotonic()
        self._lease_s = session_timeout - LEASE_MARGIN_S
        self._epochs = {}
        self._ack_next = {TP("t", 0): 5}
        self._resync = False
        self._assigned = {TP("t", 0), TP("t", 1)}

    def assignment(self):
        return self._assigned


def test_a_recent_heartbeat_keeps_the_partitions():
    c = Probe()
    assert c.lease_valid()
    assert c._epochs == {} and not c._resync and c.app.batch_handler.revoked == []


def test_an_expired_lease_drops_every_partition_once_and_rewinds():
    c = Probe()
    c._alive_at -= 8.0  # frozen: the last accepted heartbeat was sent 8 s ago (> 10 - 3)
    assert not c.lease_valid()
    assert not c.lease_valid()  # asked again (every write asks): still lost, dropped once
    assert c._epochs == {TP("t", 0): 1, TP("t", 1): 1}
    assert c._ack_next == {}
    assert c.app.batch_handler.revoked == [{0, 1}]
    assert c._resync  # whatever is fetched meanwhile is re-read from the commits


def test_a_heartbeat_accepted_after_the_freeze_renews_the_lease():
    c = Probe()
    c._alive_at -= 8.0
    assert not c.lease_valid()
    c.renew_lease(time.monotonic() - 20.0)  # an older heartbeat's answer arriving late: no renewal
    assert not c.lease_valid()
    c.renew_lease(time.monotonic())
    assert c.lease_valid()
    c._alive_at -= 8.0  # a second freeze drops them again
    assert not c.lease_valid()
    assert c.app.batch_handler.revoked == [{0, 1}, {0, 1}]

"""Exactly one evaluator among the workers: elected through Kafka's group protocol.

Every worker joins the consumer group ``<worker group>.evaluator`` on a one-partition topic
``<events topic>.evaluator`` (created here when missing). Kafka assigns that partition to one
member; the member holding it is the leader. When the leader stops (it leaves the group) or
dies (its session times out, ``SESSION_TIMEOUT_MS``), Kafka hands the partition to another
worker within seconds; nothing is ever produced to the topic::

    election = Election(bootstrap, topic="aipulse.events.evaluator", group="aipulse-workers.evaluator")
    election.start()
    election.is_leader()     # True in exactly one worker (briefly none during a handover)
    election.stop()          # leaves the group: the next leader is chosen at once

A poll thread keeps the membership alive; it touches no event data.
"""
from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger("aipulse.alerts")

SESSION_TIMEOUT_MS = 10_000   # a dead leader is replaced after this long
HEARTBEAT_MS = 1_000
POLL_MS = 500
RETRY_S = 2.0                 # wait between attempts while the broker is unreachable


class _Listener(ConsumerRebalanceListener):
    def __init__(self, election: "Election"):
        self.election = election

    def on_partitions_revoked(self, revoked):
        self.election._set(False)

    def on_partitions_assigned(self, assigned):
        self.election._set(any(tp.partition == 0 for tp in assigned))


class Election:
    def __init__(self, bootstrap: str, topic: str, group: str, kafka_options: dict | None = None,
                 session_timeout_ms: int = SESSION_TIMEOUT_MS):
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self._options = dict(kafka_options or {})
        self._session_ms = session_timeout_ms
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aipulse-election", daemon=True)

    def is_leader(self) -> bool:
        return self._leader.is_set()

    def _set(self, leader: bool) -> None:
        if leader != self._leader.is_set():
            log.warning("alert evaluator: %s", "this worker evaluates the rules" if leader else "not the evaluator")
        (self._leader.set if leader else self._leader.clear)()

    def start(self) -> "Election":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._session_ms / 1000 + 5)
        self._leader.clear()

    def _declare(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **self._options)
        try:
            admin.create_topics([NewTopic(self.topic, 1, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def _run(self) -> None:
        consumer = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    self._declare()
                    consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                             enable_auto_commit=False, session_timeout_ms=self._session_ms,
                                             heartbeat_interval_ms=HEARTBEAT_MS, client_id="aipulse-election",
                                             **self._options)
                    consumer.subscribe([self.topic], listener=_Listener(self))
                consumer.poll(timeout_ms=POLL_MS)
            except Exception as err:  # broker down: not the leader until we are back in the group
                log.warning("alert evaluator election: %s (retrying)", err)
                self._set(False)
                if consumer is not None:
                    try:
                        consumer.close(autocommit=False)
                    except Exception:
                        pass
                    consumer = None
                self._stop.wait(RETRY_S)
        self._set(False)
        if consumer is not None:
            try:
                consumer.close(autocommit=False)  # leaves the group: the next leader at once
            except Exception:
                pass

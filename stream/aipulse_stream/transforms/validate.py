"""Validation of raw messages: an event, or the reason it goes to the dead-letter topic.

Beyond the contract's own checks, the worker refuses what would poison storage or
windows: oversized messages and timestamps too far from ``now`` (a clock gone wrong)::

    >>> v = Validator(Settings.from_env())
    >>> v.check(b'not json', now=0)
    Rejected(reason='not JSON: Invalid JSON: expected value at line 1 column 1')

``now`` is the Kafka record's timestamp (:func:`record_clock`), not the wall clock: a replay
of the same records then reaches the same verdicts, whenever it runs. On a topic with
``message.timestamp.type=LogAppendTime`` that is the broker's clock at append; with
``CreateTime`` (Kafka's default) it is the producer's stamp (the SDK stamps the event's ts).

The common case is decoded by transforms/fast_decode.py (msgspec); whatever it is not sure
of goes through the contract (pydantic), which also words every dead-letter reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from aipulse.contract import Evaluation, Feedback, Interaction, InvalidEvent, SdkStats, parse_wire

from ..config import Settings
from .fast_decode import decode as fast_decode

# Every kind of the events topic: the application's three and the SDK's own ledger.
Event = Interaction | Feedback | Evaluation | SdkStats


@dataclass(frozen=True)
class Rejected:
    reason: str


class Validator:
    def __init__(self, settings: Settings):
        self.max_bytes = settings.max_event_bytes
        self.max_future_s = settings.max_future_s
        self.max_past_s = settings.max_past_s

    def check(self, raw: bytes | None, now: float) -> Event | Rejected:
        if raw is None:
            return Rejected("empty message (no value)")
        if len(raw) > self.max_bytes:
            return Rejected(f"message of {len(raw)} bytes is larger than the {self.max_bytes}-byte limit")
        event = fast_decode(raw)
        if event is None:  # not the common case: the contract decides, and words the reason
            try:
                event = parse_wire(raw)
            except InvalidEvent as err:
                return Rejected(err.reason)
        ts = event.ts.timestamp()
        if ts > now + self.max_future_s:
            return Rejected(f"ts is {ts - now:.0f}s in the future (limit {self.max_future_s:.0f}s): check the producer's clock")
        if ts < now - self.max_past_s:
            return Rejected(f"ts is {now - ts:.0f}s in the past (limit {self.max_past_s:.0f}s)")
        return event


    def check_records(self, records, wall: float) -> tuple[list, list]:
        """Judge Kafka records (``.partition``, ``.offset``, ``.value``, ``.timestamp``), each
        against its own timestamp (:func:`record_clock`; ``wall`` only for a record without one).
        Returns ([(partition, offset, event)], [(record, reason)])."""
        check = self.check
        valid, rejected = [], []
        for rec in records:
            ts = rec.timestamp
            result = check(rec.value, ts / 1000.0 if ts is not None and ts >= 0 else wall)
            if type(result) is Rejected:
                rejected.append((rec, result.reason))
            else:
                valid.append((rec.partition, rec.offset, result))
        return valid, rejected


def record_clock(record, fallback: float) -> float:
    """The clock a record is judged against: its Kafka timestamp in epoch seconds.

    ``fallback`` (the wall clock) only for a record without one (``None`` or negative: a
    message format older than Kafka 0.10, which current brokers no longer write)."""
    ts = getattr(record, "timestamp", None)
    if ts is None or ts < 0:
        return fallback
    return ts / 1000.0

"""Validation of raw messages: an event, or the reason it goes to the dead-letter topic.

Beyond the contract's own checks, the worker refuses what would poison storage or
windows: oversized messages and timestamps too far from now (a clock gone wrong)::

    >>> v = Validator(Settings.from_env())
    >>> v.check(b'not json', now=0)
    Rejected(reason='not JSON: Invalid JSON: expected value at line 1 column 1')
"""
from __future__ import annotations

from dataclasses import dataclass

from aipulse.contract import Evaluation, Feedback, Interaction, InvalidEvent, SdkStats, parse_wire

from ..config import Settings

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

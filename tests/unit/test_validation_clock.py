"""Validation judges ``ts`` against the Kafka record timestamp, so a replay of the same records
reaches the same verdicts whenever it runs (issue 10: a wall-clock check could store on the
first run what a replay dead-letters, or the other way round)."""
from __future__ import annotations

import json
import time

from aipulse_stream.config import Settings
from aipulse_stream.pipeline import Message
from aipulse_stream.transforms.validate import Validator

T0 = 1_700_000_000.0  # the records' timestamps: fixed, as stored in the topic


def event(i: int, ts: float) -> bytes:
    return json.dumps({"kind": "interaction", "event_id": f"e{i}", "ts": ts, "service": "s",
                       "latency_ms": 10.0}).encode()


def records(settings: Settings) -> list[Message]:
    """Events near both limits of the record's clock (and well inside them)."""
    f, p = settings.max_future_s, settings.max_past_s
    offsets_s = [0, f - 1, f + 1, -(p - 1), -(p + 1), 5, -5]
    return [Message(0, i, None, event(i, T0 + d), timestamp=int(T0 * 1000)) for i, d in enumerate(offsets_s)]


def verdicts(settings: Settings, recs, wall: float) -> list[tuple[int, str]]:
    valid, rejected = Validator(settings).check_records(recs, wall)
    return sorted([(o, "ok") for _p, o, _e in valid] + [(r.offset, reason) for r, reason in rejected])


def test_a_replay_reaches_the_same_verdicts_whenever_it_runs():
    settings = Settings.from_env({})
    recs = records(settings)
    first = verdicts(settings, recs, wall=T0)
    # Replays a day, a month and a year later (a backfill, a restart after an outage).
    for later in (86400.0, 31 * 86400.0, 365 * 86400.0):
        assert verdicts(settings, recs, wall=T0 + later) == first
    # And the verdicts are the record clock's: beyond a limit is refused, inside accepted.
    assert [v for _o, v in first] == ["ok", "ok", first[2][1], "ok", first[4][1], "ok", "ok"]
    assert first[2][1].startswith("ts is") and "future" in first[2][1]
    assert first[4][1].startswith("ts is") and "past" in first[4][1]


def test_wall_clock_only_for_a_record_without_timestamp():
    settings = Settings.from_env({})
    now = time.time()
    recs = [Message(0, 0, None, event(0, now), timestamp=None), Message(0, 1, None, event(1, now), timestamp=-1)]
    valid, rejected = Validator(settings).check_records(recs, now)
    assert [o for _p, o, _e in valid] == [0, 1] and not rejected

"""The fast decoder (transforms/fast_decode.py) never disagrees with the contract (pydantic).

For every case: when the fast path returns an event, the contract accepts the same bytes and
builds an equal event (every field); when it returns None, the worker asks the contract, so
the verdict and the dead-letter reason are the contract's. Cases: the fault suite's fuzz
strategies (valid and invalid events, garbage bytes) and hand-written corners where msgspec
and pydantic's lax mode could part ways.
"""
from __future__ import annotations

import json

import pytest
from aipulse.contract import InvalidEvent, parse_wire

from aipulse_stream.config import Settings
from aipulse_stream.transforms import validate
from aipulse_stream.transforms.fast_decode import decode
from fault.test_fuzz import collect, encode, topic_cases

NOW = 1_700_000_000.0


def reference(raw: bytes):
    try:
        return parse_wire(raw)
    except InvalidEvent as err:
        return err


def assert_agrees(raw: bytes) -> bool:
    """True when the fast path decided (and agreed)."""
    fast = decode(raw)
    ref = reference(raw)
    if fast is None:
        return False
    assert not isinstance(ref, InvalidEvent), f"fast path accepted what the contract refuses ({ref.reason}): {raw[:300]!r}"
    assert type(fast) is type(ref)
    assert fast.model_dump() == ref.model_dump(), raw[:300]
    assert fast.ts.timestamp() == ref.ts.timestamp()
    return True


BASE = {"kind": "interaction", "event_id": "e1", "ts": "2023-11-14T22:13:20.123456Z", "service": "s",
        "feature": "chat", "model": "m", "latency_ms": 12.5}
CORNERS = [
    {}, {"latency_ms": 5}, {"latency_ms": "5"}, {"latency_ms": 5.0, "input_tokens": 5.0}, {"input_tokens": "5"},
    {"input_tokens": True}, {"cached": 1}, {"cached": "true"}, {"shadow": None}, {"feature": None}, {"feature": 7},
    {"interaction_id": None}, {"interaction_id": ""}, {"event_id": ""}, {"event_id": "x" * 128}, {"event_id": "x" * 129},
    {"feature": "é" * 200}, {"feature": "é" * 201}, {"feature": "\U0001F600" * 200}, {"feature": "\U0001F600" * 201},
    {"ts": 1700000000}, {"ts": 1700000000.5}, {"ts": -1}, {"ts": True}, {"ts": "2023-11-14T22:13:20+02:00"},
    {"ts": "2023-11-14T22:13:20"}, {"ts": " 2023-11-14T22:13:20z "}, {"ts": "2023-11-14"}, {"ts": "yesterday"},
    {"ts": 1e30}, {"ts": None}, {"schema_version": "1"}, {"schema_version": "1.9"}, {"schema_version": "2.0"},
    {"schema_version": "10.0"}, {"schema_version": 1.0}, {"schema_version": "1abc"}, {"outcome": "OK"},
    {"outcome": "timeout"}, {"fallback_depth": 17}, {"fallback_depth": 16}, {"confidence": 1.0000001},
    {"rollout_stage": 100}, {"rollout_stage": 100.5}, {"cost_usd": None}, {"cost_usd": 1e6}, {"cost_usd": 1e6 + 1},
    {"latency_ms": 7 * 86400 * 1000}, {"latency_ms": 7 * 86400 * 1000 + 1}, {"latency_ms": -0.0},
    {"input_tokens": 2**53}, {"input_tokens": 2**53 + 1}, {"attributes": {"a": 1, "b": 1.5, "c": True, "d": None, "e": "x"}},
    {"attributes": {"a": [1]}}, {"attributes": {"a": {"b": 1}}}, {"attributes": {"a": 10**20}}, {"attributes": {"a": "x" * 1001}},
    {"attributes": {str(i): i for i in range(65)}}, {"attributes": {"k" * 201: 1}}, {"attributes": None},
    {"unknown_field": {"deep": [1, 2]}}, {"kind": "sdk_stats"}, {"kind": "bogus"}, {"kind": None},
    {"kind": "feedback", "interaction_id": "i1", "feedback_type": "thumbs_up"},
    {"kind": "feedback", "interaction_id": "i1", "feedback_type": "thumbs_sideways"},
    {"kind": "feedback", "feedback_type": "thumbs_up"}, {"kind": "feedback", "interaction_id": "i1", "feedback_type": "task_failed", "score": -1e9},
    {"kind": "evaluation", "interaction_id": "i1", "correct": True}, {"kind": "evaluation", "interaction_id": "i1"},
    {"kind": "evaluation", "interaction_id": "i1", "score": 0.5, "source": "shadow"},
    {"kind": "evaluation", "interaction_id": "i1", "score": 1.5}, {"kind": "evaluation", "interaction_id": "i1", "correct": None, "score": None},
]
RAW_CORNERS = [
    b"", b"null", b"[]", b"{", b"not json", b'{"kind": "interaction"}',
    b'{"kind":"interaction","event_id":"e1","ts":1700000000,"latency_ms":1,"latency_ms":2}',
    b'{"kind":"interaction","event_id":"e1","event_id":"e2","ts":1700000000,"latency_ms":1}',
    b'{"kind":"interaction","event_id":"\\ud800","ts":1700000000,"latency_ms":1}',
    b'{"kind":"interaction","event_id":"\xff","ts":1700000000,"latency_ms":1}',
    b'{"kind":"interaction","event_id":"e1","ts":1700000000,"latency_ms":NaN}',
    b'{"kind":"interaction","event_id":"e1","ts":1700000000,"latency_ms":1e400}',
    b'{"kind":"interaction","event_id":"e1","ts":1700000000,"latency_ms":1,"attributes":{"a":1e400}}',
    b'{"kind":"interaction","event_id":"e1","ts":1700000000,"latency_ms":1} trailing',
    b' {"kind":"interaction","event_id":"e1","ts":1700000000,"latency_ms":1}\n',
]


@pytest.mark.parametrize("patch", CORNERS, ids=lambda p: json.dumps(p)[:60])
def test_corner_cases_agree(patch):
    assert_agrees(json.dumps({**BASE, **patch}).encode())


@pytest.mark.parametrize("raw", RAW_CORNERS, ids=lambda r: repr(r[:50]))
def test_raw_corner_cases_agree(raw):
    assert_agrees(raw)


def test_fuzz_cases_agree_and_the_fast_path_takes_most_valid_events():
    """The fault suite's fuzz strategies (valid and invalid events), 3,000 cases."""
    cases = collect(topic_cases(NOW), 3_000)
    fast = valid = 0
    for i, (_key, case) in enumerate(cases):
        raw = encode(case, "u", i)
        decided = assert_agrees(raw)
        fast += decided
        valid += not isinstance(reference(raw), InvalidEvent)
    assert valid > 500, valid
    assert fast >= 0.5 * valid, f"the fast path decided only {fast} of {valid} valid events"


def test_validator_verdicts_equal_the_contract_only_validator(monkeypatch):
    """Validator.check (fast path first) and the same checks on pydantic alone: same verdicts."""
    cases = [json.dumps({**BASE, **p}).encode() for p in CORNERS] + RAW_CORNERS
    cases += [encode(c, "v", i) for i, (_k, c) in enumerate(collect(topic_cases(NOW), 500))]
    settings = Settings.from_env({})
    fast = [validate.Validator(settings).check(raw, NOW) for raw in cases]
    monkeypatch.setattr(validate, "fast_decode", lambda raw: None)
    slow = [validate.Validator(settings).check(raw, NOW) for raw in cases]
    for raw, a, b in zip(cases, fast, slow):
        if isinstance(b, validate.Rejected):
            assert a == b, raw[:200]
        else:
            assert a.model_dump() == b.model_dump(), raw[:200]

"""A fast decoder for the common case of the event contract; pydantic stays the reference.

``decode(raw)`` returns the same contract object that ``aipulse.contract.parse_wire`` would
(an ``Interaction``, ``Feedback`` or ``Evaluation`` instance, same field values), or None when
it is not sure: then the caller asks the contract (pydantic), which accepts or gives the exact
dead-letter reason. So the fast path may refuse more than the contract, never accept more::

    >>> ev = decode(b'{"kind": "interaction", "event_id": "e1", "ts": "2023-11-14T22:13:20Z",'
    ...             b' "latency_ms": 812.5}')
    >>> type(ev).__name__, ev.interaction_id, ev.outcome
    ('Interaction', 'e1', 'ok')
    >>> decode(b'{"kind": "interaction", "event_id": "e1", "ts": 1, "latency_ms": "812"}') is None
    True

Why: the contract's ``validate_json`` (a discriminated union) costs 10-17 µs per event here;
msgspec decoding into typed structs with the same bounds costs ~2-4 µs, and the pydantic
object is then built without validating again (its ``__dict__`` set directly, as
``model_construct`` does). The checks msgspec cannot state (``ts`` parsing, the schema major,
attribute limits, an evaluation's judgement) are the contract's own functions or rules, run
here; anything msgspec would coerce differently from pydantic's lax mode (numbers in strings,
``5.0`` for an int, ``"true"`` for a bool, ``sdk_stats``) is left to pydantic.
tests/unit/test_fast_decode.py holds the two to the same verdicts and values.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import msgspec
from aipulse.contract import (MAX_ATTRIBUTE_LEN, MAX_ATTRIBUTES, MAX_COST_USD, MAX_DURATION_MS, MAX_ID_LEN,
                              MAX_NAME_LEN, MAX_SCORE, MAX_TEXT_LEN, SCHEMA_MAJOR, SCHEMA_VERSION, Evaluation,
                              Feedback, Interaction, _parse_ts)
from msgspec import Meta, Struct

Name = Annotated[str, Meta(max_length=MAX_NAME_LEN)]
Ident = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LEN)]
UserId = Annotated[str, Meta(max_length=MAX_ID_LEN)]
Text = Annotated[str, Meta(max_length=MAX_TEXT_LEN)]
DurationMs = Annotated[float, Meta(ge=0, le=MAX_DURATION_MS)]
CostUsd = Annotated[float, Meta(ge=0, le=MAX_COST_USD)]
NonNegInt = Annotated[int, Meta(ge=0, le=2**53)]
# ts: the contract's own _parse_ts judges it (RFC 3339 text or epoch seconds).
Ts = Union[str, int, float]
Outcome = Literal["ok", "error", "timeout", "fallback", "escalated", "refused", "rejected_input", "rejected_output"]
FeedbackType = Literal["thumbs_up", "thumbs_down", "task_completed", "task_failed", "escalation_resolved",
                       "human_correction"]
Source = Literal["ground_truth", "shadow", "human", "auto"]
AttrValue = Union[str, int, float, bool, None]
MAX_BRACKETS = 64  # far below any depth either parser refuses; events have 2
_SAFE_INT = 2**53  # msgspec and pydantic agree on ints; keep clear of any float conversion


class _Interaction(Struct, tag_field="kind", tag="interaction"):
    event_id: Ident
    ts: Ts
    latency_ms: DurationMs
    schema_version: str = SCHEMA_VERSION
    service: Name = "default"
    interaction_id: Ident | None = None
    feature: Name = ""
    model: Name = ""
    provider: Name = ""
    model_version: Name = ""
    prompt_version: Name = ""
    variant: Name = ""
    rollout_stage: Annotated[float, Meta(ge=0, le=100)] | None = None
    user_id: UserId = ""
    session_id: UserId = ""
    ttft_ms: DurationMs | None = None
    input_tokens: NonNegInt = 0
    output_tokens: NonNegInt = 0
    cost_usd: CostUsd | None = None
    cost_source: Name = ""
    outcome: Outcome = "ok"
    fallback_depth: Annotated[int, Meta(ge=0, le=16)] = 0
    fallback_reason: Name = ""
    error_type: Name = ""
    confidence: Annotated[float, Meta(ge=0, le=1)] | None = None
    shadow: bool = False
    shadow_of: UserId = ""
    cached: bool = False
    attributes: dict[Annotated[str, Meta(max_length=MAX_NAME_LEN)], AttrValue] = {}
    prompt: Text | None = None
    response: Text | None = None


class _Feedback(Struct, tag_field="kind", tag="feedback"):
    event_id: Ident
    ts: Ts
    interaction_id: Ident
    feedback_type: FeedbackType
    schema_version: str = SCHEMA_VERSION
    service: Name = "default"
    score: Annotated[float, Meta(ge=-MAX_SCORE, le=MAX_SCORE)] | None = None
    user_id: UserId = ""
    correction: Text | None = None
    comment: Text | None = None


class _Evaluation(Struct, tag_field="kind", tag="evaluation"):
    event_id: Ident
    ts: Ts
    interaction_id: Ident
    schema_version: str = SCHEMA_VERSION
    service: Name = "default"
    source: Source = "ground_truth"
    correct: bool | None = None
    score: Annotated[float, Meta(ge=0, le=1)] | None = None
    evaluator: Name = ""
    label: Name = ""


_DECODER = msgspec.json.Decoder(Union[_Interaction, _Feedback, _Evaluation])
# (model, kind, fields set): every field counts as set; one shared set per model (pydantic only
# adds to it on attribute assignment, of a name already in it), not one allocation per event.
_MODEL = {s: (model, kind, set(model.model_fields)) for s, model, kind in (
    (_Interaction, Interaction, "interaction"), (_Feedback, Feedback, "feedback"), (_Evaluation, Evaluation, "evaluation"))}
_MAJOR_PREFIX = f"{SCHEMA_MAJOR}."
_asdict = msgspec.structs.asdict
_new = object.__new__
_set = object.__setattr__


def decode(raw: bytes) -> Interaction | Feedback | Evaluation | None:
    """The contract object for ``raw``, or None: ask ``parse_wire`` (it may still accept)."""
    # pydantic's JSON parser refuses nesting deeper than its recursion limit (200), even in
    # ignored fields, which msgspec skips: leave anything with many brackets to pydantic.
    if raw.count(b"{") + raw.count(b"[") > MAX_BRACKETS:
        return None
    try:
        s = _DECODER.decode(raw)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    version = s.schema_version
    if version != str(SCHEMA_MAJOR) and not version.startswith(_MAJOR_PREFIX):
        return None
    try:
        ts = _parse_ts(s.ts)
    except (ValueError, OverflowError, OSError):
        return None
    cls = type(s)
    if cls is _Interaction:
        attrs = s.attributes
        if attrs and not _attributes_ok(attrs):
            return None
    elif cls is _Evaluation and s.correct is None and s.score is None:
        return None
    model, kind, fields_set = _MODEL[cls]
    d = _asdict(s)
    d["ts"] = ts
    d["kind"] = kind
    if cls is _Interaction and d["interaction_id"] is None:
        d["interaction_id"] = d["event_id"]  # the contract's _identity rule
    obj = _new(model)
    _set(obj, "__dict__", d)
    _set(obj, "__pydantic_fields_set__", fields_set)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _attributes_ok(attrs: dict) -> bool:
    """The contract's attribute rules; False also where the two decoders might differ."""
    if len(attrs) > MAX_ATTRIBUTES:
        return False
    for v in attrs.values():
        t = type(v)
        if t is str:
            if len(v) > MAX_ATTRIBUTE_LEN:
                return False
        elif t is float:
            if not math.isfinite(v):
                return False
        elif t is int:
            if not -_SAFE_INT <= v <= _SAFE_INT:
                return False
    return True

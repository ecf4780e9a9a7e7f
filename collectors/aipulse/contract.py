"""The event contract, version 1: what an application sends and what the workers accept.

Three kinds of application event travel on one Kafka topic, keyed by ``interaction_id`` so
that an interaction, its feedback and its evaluations land in the same partition. A fourth
kind, ``sdk_stats``, is the SDK's own delivery ledger (:class:`SdkStats`, keyed by the SDK
instance): :func:`parse_event` reads the application kinds, :func:`parse_wire` all four::

    >>> from aipulse.contract import parse_event
    >>> ev = parse_event(b'{"kind": "interaction", "event_id": "e1", "ts": 1700000000,'
    ...                  b' "service": "support", "feature": "chat", "model": "gpt-4o",'
    ...                  b' "latency_ms": 812.5, "outcome": "ok"}')
    >>> ev.interaction_id, ev.outcome
    ('e1', 'ok')

Wire format: UTF-8 JSON, one event per message, key = interaction id, Kafka timestamp =
event time. ``ts`` accepts RFC 3339 strings and epoch seconds. Unknown fields are ignored
and newer minor versions (``1.x``) are accepted, so producers can move ahead of workers;
a different major version is rejected. Every number must be finite; counts and durations
are non-negative. Invalid events are never dropped silently: the worker sends them to the
dead-letter topic with the reason (see :func:`parse_event`).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_MAJOR = 1
SCHEMA_VERSION = "1.0"

# Bounds that keep one event from poisoning a row, a window or a dashboard legend.
MAX_NAME_LEN = 200          # service, feature, model, variant and other dimensions
MAX_ID_LEN = 128            # event_id, interaction_id, session_id, user_id
MAX_TEXT_LEN = 32_000       # prompt, response, correction (off by default in the SDK)
MAX_ATTRIBUTES = 64         # keys in `attributes`
MAX_ATTRIBUTE_LEN = 1_000   # one attribute value, as text
# Ceilings on summed values: finite sums of billions of events stay finite and exact enough
# (an absurd value is a producer bug, and goes to the dead-letter topic instead of a window).
MAX_DURATION_MS = 7 * 86400 * 1000   # latency_ms, ttft_ms: a week
MAX_COST_USD = 1_000_000.0          # one call
MAX_SCORE = 1e9                      # feedback score


class Outcome(str, Enum):
    """How a model call ended, as the user experienced it."""

    ok = "ok"
    error = "error"
    timeout = "timeout"
    fallback = "fallback"
    escalated = "escalated"
    refused = "refused"
    rejected_input = "rejected_input"
    rejected_output = "rejected_output"


class FeedbackType(str, Enum):
    thumbs_up = "thumbs_up"
    thumbs_down = "thumbs_down"
    task_completed = "task_completed"
    task_failed = "task_failed"
    escalation_resolved = "escalation_resolved"
    human_correction = "human_correction"


class EvaluationSource(str, Enum):
    ground_truth = "ground_truth"
    shadow = "shadow"
    human = "human"
    auto = "auto"


Name = Annotated[str, Field(max_length=MAX_NAME_LEN)]
Ident = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]
Text = Annotated[str, Field(max_length=MAX_TEXT_LEN)]
DurationMs = Annotated[float, Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)]
CostUsd = Annotated[float, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)]
NonNegInt = Annotated[int, Field(ge=0, le=2**53)]


def _parse_ts(value: Any) -> datetime:
    """RFC 3339 text or epoch seconds (int or float) to an aware UTC datetime."""
    if isinstance(value, bool):
        raise ValueError("ts must be RFC 3339 text or epoch seconds, not a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("ts must be finite")
        if not (0 <= value < 32503680000):  # 1970 .. 3000
            raise ValueError("ts epoch seconds out of range")
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not RFC 3339 or epoch seconds") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise ValueError("ts must be RFC 3339 text or epoch seconds")


class _Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=False, use_enum_values=True)

    schema_version: str = SCHEMA_VERSION
    event_id: Ident
    ts: datetime
    service: Name = "default"
    interaction_id: Ident | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> datetime:
        return _parse_ts(value)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> str:
        text = str(value)
        major = text.split(".", 1)[0]
        if major != str(SCHEMA_MAJOR):
            raise ValueError(f"schema_version {text[:20]!r} is not supported (this worker reads {SCHEMA_MAJOR}.x)")
        return text

    @property
    def key(self) -> bytes:
        """The Kafka message key: the interaction this event belongs to."""
        return (self.interaction_id or self.event_id).encode()


class Interaction(_Event):
    """One model call (an LLM, a classifier, a voice agent turn)."""

    kind: Literal["interaction"] = "interaction"
    feature: Name = ""
    model: Name = ""
    provider: Name = ""
    model_version: Name = ""
    prompt_version: Name = ""
    variant: Name = ""
    rollout_stage: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    user_id: Annotated[str, Field(max_length=MAX_ID_LEN)] = ""
    session_id: Annotated[str, Field(max_length=MAX_ID_LEN)] = ""
    latency_ms: DurationMs
    ttft_ms: DurationMs | None = None
    input_tokens: NonNegInt = 0
    output_tokens: NonNegInt = 0
    cost_usd: CostUsd | None = None
    cost_source: Name = ""
    outcome: Outcome = Outcome.ok.value  # type: ignore[assignment]
    fallback_depth: Annotated[int, Field(ge=0, le=16)] = 0
    fallback_reason: Name = ""
    error_type: Name = ""
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    shadow: bool = False
    shadow_of: Annotated[str, Field(max_length=MAX_ID_LEN)] = ""
    cached: bool = False
    attributes: dict[Annotated[str, Field(max_length=MAX_NAME_LEN)], str | int | float | bool | None] = Field(
        default_factory=dict
    )
    prompt: Text | None = None
    response: Text | None = None

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict) -> dict:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"attributes has {len(value)} keys, at most {MAX_ATTRIBUTES} allowed")
        for k, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"attribute {k[:40]!r} is not finite")
            if isinstance(v, str) and len(v) > MAX_ATTRIBUTE_LEN:
                raise ValueError(f"attribute {k[:40]!r} is longer than {MAX_ATTRIBUTE_LEN} characters")
        return value

    @model_validator(mode="after")
    def _identity(self) -> "Interaction":
        # An interaction is its own join key: its id is the event id unless given.
        if self.interaction_id is None:
            self.interaction_id = self.event_id
        return self


class Feedback(_Event):
    """What a user or an operator said about an interaction, later."""

    kind: Literal["feedback"] = "feedback"
    interaction_id: Ident
    feedback_type: FeedbackType
    score: Annotated[float, Field(ge=-MAX_SCORE, le=MAX_SCORE, allow_inf_nan=False)] | None = None
    user_id: Annotated[str, Field(max_length=MAX_ID_LEN)] = ""
    correction: Text | None = None
    comment: Text | None = None


class Evaluation(_Event):
    """A judgement of an interaction's answer: ground truth, a shadow comparison, a human."""

    kind: Literal["evaluation"] = "evaluation"
    interaction_id: Ident
    source: EvaluationSource = EvaluationSource.ground_truth
    correct: bool | None = None
    score: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    evaluator: Name = ""
    label: Name = ""

    @model_validator(mode="after")
    def _judged(self) -> "Evaluation":
        if self.correct is None and self.score is None:
            raise ValueError("an evaluation needs `correct` or `score`")
        return self


class SdkStats(_Event):
    """One SDK instance's delivery ledger: its counters since it started (cumulative).

    Sent every ``ledger_interval_s`` and once at close (``final=True``). The counters cover
    the application's events only (a ledger message does not count itself), and obey
    ``emitted == sent + sum(dropped.values()) + queued``. Keyed by ``instance_id``, so one
    instance's ledger stays in order on one partition; the newest message of an instance
    supersedes the older ones. Loss before Kafka, per service and instance, is
    ``sum(dropped.values())`` of its latest message::

        {"kind": "sdk_stats", "schema_version": "1.0", "event_id": "...", "ts": "...",
         "service": "support", "instance_id": "3f2a...-4711", "pid": 4711, "sdk_version": "0.1.0",
         "interval_s": 60.0, "final": false, "emitted": 1200, "sent": 1150, "queued": 30,
         "dropped": {"kafka_unavailable": 20}}
    """

    kind: Literal["sdk_stats"] = "sdk_stats"
    instance_id: Ident
    pid: NonNegInt = 0
    sdk_version: Name = ""
    interval_s: Annotated[float, Field(ge=0, le=MAX_DURATION_MS / 1000, allow_inf_nan=False)] = 0.0
    final: bool = False
    emitted: NonNegInt
    sent: NonNegInt
    queued: NonNegInt
    dropped: dict[Annotated[str, Field(max_length=MAX_NAME_LEN)], NonNegInt] = Field(default_factory=dict)

    @field_validator("dropped")
    @classmethod
    def _reasons(cls, value: dict) -> dict:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"dropped has {len(value)} reasons, at most {MAX_ATTRIBUTES} allowed")
        return value

    @model_validator(mode="after")
    def _balanced(self) -> "SdkStats":
        if self.emitted != self.sent + sum(self.dropped.values()) + self.queued:
            raise ValueError("emitted must equal sent + sum(dropped) + queued")
        return self

    @property
    def key(self) -> bytes:
        return self.instance_id.encode()


Event = Annotated[Union[Interaction, Feedback, Evaluation], Field(discriminator="kind")]
EVENT_ADAPTER: TypeAdapter[Interaction | Feedback | Evaluation] = TypeAdapter(Event)
KINDS = ("interaction", "feedback", "evaluation")
# Everything that travels on the events topic: the application's kinds and the SDK's ledger.
WireEvent = Annotated[Union[Interaction, Feedback, Evaluation, SdkStats], Field(discriminator="kind")]
WIRE_ADAPTER: TypeAdapter[Interaction | Feedback | Evaluation | SdkStats] = TypeAdapter(WireEvent)
WIRE_KINDS = KINDS + ("sdk_stats",)


class InvalidEvent(ValueError):
    """Raised by :func:`parse_event`; ``reason`` is short and fit for a dead-letter header."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in WIRE_KINDS) or "event"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def parse_event(raw: bytes | str) -> Interaction | Feedback | Evaluation:
    """Validate one application event; raise :class:`InvalidEvent` with a readable reason."""
    return _parse(EVENT_ADAPTER, KINDS, raw)


def parse_wire(raw: bytes | str) -> Interaction | Feedback | Evaluation | SdkStats:
    """Validate any message of the events topic, the SDK's ``sdk_stats`` ledger included.

        >>> parse_wire(b'{"kind": "sdk_stats", "event_id": "e2", "ts": 1700000000,'
        ...            b' "instance_id": "i1", "emitted": 3, "sent": 2, "queued": 0,'
        ...            b' "dropped": {"queue_full": 1}}').key
        b'i1'
    """
    return _parse(WIRE_ADAPTER, WIRE_KINDS, raw)


def _parse(adapter: TypeAdapter, kinds: tuple[str, ...], raw: bytes | str) -> Any:
    try:
        return adapter.validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0] if err.error_count() else {}
        if first.get("type") == "json_invalid":
            raise InvalidEvent(f"not JSON: {first.get('msg', '')}"[:300]) from None
        if first.get("type") == "model_attributes_type":
            raise InvalidEvent("not a JSON object") from None
        if first.get("type") in ("union_tag_not_found", "union_tag_invalid"):
            raise InvalidEvent(f"kind must be one of {', '.join(kinds)}") from None
        raise InvalidEvent(_reason(err)[:1000]) from None


def json_schema() -> dict:
    """The JSON Schema of one wire event, for producers in other languages."""
    schema = WIRE_ADAPTER.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"aipulse event v{SCHEMA_VERSION}"
    schema["description"] = (
        "One aipulse event (interaction, feedback or evaluation; or sdk_stats, the SDK's own "
        "delivery ledger). UTF-8 JSON, one per Kafka message, key = interaction_id (event_id "
        "for an interaction, instance_id for sdk_stats), timestamp = ts."
    )
    return schema

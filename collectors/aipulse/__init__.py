"""aipulse: observability for AI features, as safe as a logging call.

Three lines to instrument::

    import aipulse
    aipulse.init(service="support", kafka_bootstrap="kafka:9092")   # or AIPULSE_* variables

    with aipulse.interaction(feature="chat", model="gpt-4o", user_id=user.id) as call:
        reply = llm(prompt)
        call.update(input_tokens=812, output_tokens=95)

    aipulse.feedback(call.id, "thumbs_up")
    aipulse.evaluate(call.id, correct=True, source="human")

Before :func:`init` every call is a silent no-op. The application's thread only builds a
small dict and enqueues it (a few microseconds); a background thread validates, prices and
sends to Kafka. Nothing here ever raises into the app or blocks it; when the buffer is full
or Kafka is away, events are dropped and counted (:func:`stats`).
See docs/sdk.md for the whole surface.
"""
from __future__ import annotations

from typing import Any

from . import client as _client
from .client import SDK_VERSION, close, evaluate, feedback, flush, get_client, new_id, record, stats
from .client import init as _init
from .config import Config
from .contract import SCHEMA_VERSION, EvaluationSource, FeedbackType, Outcome
from .scope import Interaction, RejectedInput, RejectedOutput, current_interaction, interaction
from .transport import FlushResult

__version__ = SDK_VERSION

__all__ = [
    "init",
    "interaction",
    "record",
    "feedback",
    "evaluate",
    "flush",
    "close",
    "stats",
    "current_interaction",
    "get_client",
    "new_id",
    "Config",
    "FlushResult",
    "Interaction",
    "RejectedInput",
    "RejectedOutput",
    "Outcome",
    "FeedbackType",
    "EvaluationSource",
    "SCHEMA_VERSION",
]


def init(*, kafka_bootstrap: str | None = None, **options: Any):
    """Start the SDK. Options are :class:`~aipulse.config.Config` fields (``service``,
    ``topic``, ``user_salt``, ``capture_text``, ``max_queue_events``, ``price_overrides``...);
    ``kafka_bootstrap`` is a short name for ``bootstrap_servers``. Anything not given comes
    from ``AIPULSE_*`` environment variables, then defaults.

        >>> aipulse.init(service="support", kafka_bootstrap="127.0.0.1:9092")  # doctest: +SKIP

    A bad option raises ``ValueError`` here, once; nothing raises afterwards.
    """
    if kafka_bootstrap is not None:
        options["bootstrap_servers"] = kafka_bootstrap
    return _init(**options)

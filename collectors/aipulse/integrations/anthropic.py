"""Instrument an ``anthropic`` client (sync or async): ``messages.create`` (plain and
``stream=True``) and ``messages.stream(...)`` become aipulse interactions with model, tokens,
latency, time to first token (not for ``messages.stream``, whose events the SDK does not
see), and errors (``timeout`` for ``APITimeoutError``, ``error`` otherwise; ``refused`` when
the model stops with ``refusal``).

    import anthropic, aipulse
    from aipulse.integrations.anthropic import instrument_anthropic

    client = instrument_anthropic(anthropic.Anthropic(), feature="summarize")
    msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=msgs)
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

from ._recorder import CallRecorder, wrap_create

PROVIDER = "anthropic"
_MARK = "_aipulse_instrumented"


def _on_message(msg: Any, rec: CallRecorder) -> None:
    rec.set_model(getattr(msg, "model", None))
    usage = getattr(msg, "usage", None)
    if usage is not None:
        rec.tokens(getattr(usage, "input_tokens", 0), getattr(usage, "output_tokens", 0))
    if getattr(msg, "stop_reason", None) == "refusal":
        rec.outcome = "refused"


def _on_event(event: Any, rec: CallRecorder) -> bool:
    kind = getattr(event, "type", "")
    if kind == "message_start":
        _on_message(event.message, rec)
    elif kind == "content_block_delta":
        rec.first_token()
    elif kind == "message_delta":
        usage = getattr(event, "usage", None)
        if usage is not None:
            rec.tokens(getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", 0))
        if getattr(getattr(event, "delta", None), "stop_reason", None) == "refusal":
            rec.outcome = "refused"
    return True


class _StreamManager:
    """Proxy for ``messages.stream(...)``: records when the ``with`` block ends."""

    def __init__(self, manager: Any, rec: CallRecorder):
        self._manager = manager
        self._rec = rec
        self._stream = None

    def _end(self, exc: BaseException | None) -> None:
        snapshot = getattr(self._stream, "current_message_snapshot", None) if self._stream else None
        if snapshot is not None:
            _on_message(snapshot, self._rec)
        self._rec.finish(exc)

    def __enter__(self) -> Any:
        try:
            self._stream = self._manager.__enter__()
        except BaseException as exc:
            self._rec.finish(exc)
            raise
        return self._stream

    def __exit__(self, exc_type, exc, tb):
        try:
            self._end(exc)
        finally:
            return self._manager.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Any:
        try:
            self._stream = await self._manager.__aenter__()
        except BaseException as exc:
            self._rec.finish(exc)
            raise
        return self._stream

    async def __aexit__(self, exc_type, exc, tb):
        try:
            self._end(exc)
        finally:
            return await self._manager.__aexit__(exc_type, exc, tb)


def _wrap_create(create: Any, defaults: dict[str, Any], is_async: bool) -> Any:
    return wrap_create(create, defaults, is_async, PROVIDER, _on_message, lambda kw: _on_event)


def _wrap_stream(stream: Any, defaults: dict[str, Any]) -> Any:
    @functools.wraps(stream)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        rec = CallRecorder(PROVIDER, str(kwargs.get("model") or ""), defaults)
        try:
            manager = stream(*args, **kwargs)
        except BaseException as exc:
            rec.finish(exc)
            raise
        return _StreamManager(manager, rec)
    return wrapped


def _is_async(resource: Any) -> bool:
    # The clients' async methods are wrapped by plain decorators: ask the class, not the method.
    return type(resource).__name__.startswith("Async") or inspect.iscoroutinefunction(resource.create)


def instrument_anthropic(client: Any, **fields: Any) -> Any:
    """Wrap ``client.messages.create`` and ``client.messages.stream``; ``fields`` go on every
    interaction emitted. Returns the same client."""
    messages = client.messages
    if getattr(messages, _MARK, False):
        return client
    messages.create = _wrap_create(messages.create, fields, _is_async(messages))
    messages.stream = _wrap_stream(messages.stream, fields)
    setattr(messages, _MARK, True)
    return client


instrument = instrument_anthropic

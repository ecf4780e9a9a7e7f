"""Instrument an ``openai`` client (sync or async): ``chat.completions.create``, plain and
streamed, becomes one aipulse interaction with model, tokens, latency, time to first token,
and errors (``outcome`` ``timeout`` for ``APITimeoutError``, ``error`` otherwise, with the
exception's class as ``error_type``; ``refused`` for a refusal or a content-filter stop).

    import openai, aipulse
    from aipulse.integrations.openai import instrument_openai

    client = instrument_openai(openai.OpenAI(), feature="support-chat")
    reply = client.chat.completions.create(model="gpt-4o", messages=msgs)
    for chunk in client.chat.completions.create(model="gpt-4o", messages=msgs, stream=True):
        ...

The app's request is sent exactly as the app wrote it: nothing is added (some
OpenAI-compatible servers answer 400 to fields they do not know). A streamed call's tokens are
recorded when the app asked for them (``stream_options={"include_usage": True}``); otherwise
the interaction has latency, time to first token and outcome, and zero tokens. The client is
changed in place and returned; calling ``instrument_openai`` twice is harmless.
"""
from __future__ import annotations

import inspect
from typing import Any

from ._recorder import CallRecorder, wrap_create

PROVIDER = "openai"
_MARK = "_aipulse_instrumented"


def _usage(obj: Any, rec: CallRecorder) -> None:
    usage = getattr(obj, "usage", None)
    if usage is not None:
        rec.tokens(getattr(usage, "prompt_tokens", 0), getattr(usage, "completion_tokens", 0))


def _on_response(resp: Any, rec: CallRecorder) -> None:
    rec.set_model(getattr(resp, "model", None))
    _usage(resp, rec)
    choices = getattr(resp, "choices", None) or []
    if choices:
        first = choices[0]
        message = getattr(first, "message", None)
        if getattr(first, "finish_reason", None) == "content_filter" or getattr(message, "refusal", None):
            rec.outcome = "refused"


def _on_chunk(chunk: Any, rec: CallRecorder) -> bool:
    rec.set_model(getattr(chunk, "model", None))
    if getattr(chunk, "usage", None) is not None:  # present only when the app asked for usage
        _usage(chunk, rec)
    choices = getattr(chunk, "choices", None)
    if choices:
        delta = getattr(choices[0], "delta", None)
        if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
            rec.first_token()  # the first *content*, not the empty role-only chunk
        if getattr(choices[0], "finish_reason", None) == "content_filter":
            rec.outcome = "refused"
    return True  # the app sees every chunk it asked for


def _wrap(create: Any, defaults: dict[str, Any], is_async: bool) -> Any:
    # The request is never changed: the stream handler only reads.
    return wrap_create(create, defaults, is_async, PROVIDER, _on_response, lambda kw: _on_chunk)


def _is_async(resource: Any) -> bool:
    # The clients' async methods are wrapped by plain decorators: ask the class, not the method.
    return type(resource).__name__.startswith("Async") or inspect.iscoroutinefunction(resource.create)


def instrument_openai(client: Any, **fields: Any) -> Any:
    """Wrap ``client.chat.completions.create``; ``fields`` go on every interaction it emits
    (``feature``, ``variant``, ``prompt_version``...). Returns the same client."""
    completions = client.chat.completions
    if getattr(completions, _MARK, False):
        return client
    completions.create = _wrap(completions.create, fields, _is_async(completions))
    setattr(completions, _MARK, True)
    return client


instrument = instrument_openai

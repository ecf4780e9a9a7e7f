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

For streamed calls the wrapper asks for usage (``stream_options={"include_usage": True}``)
unless the app set ``stream_options`` itself, and then hides the extra usage-only chunk, so
the app sees exactly the chunks it would have seen. The client is changed in place and
returned; calling ``instrument_openai`` twice is harmless.
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


def _chunk_handler(hide_usage_chunk: bool):
    def on_chunk(chunk: Any, rec: CallRecorder) -> bool:
        rec.set_model(getattr(chunk, "model", None))
        choices = getattr(chunk, "choices", None)
        if getattr(chunk, "usage", None) is not None:
            _usage(chunk, rec)
        if choices:
            delta = getattr(choices[0], "delta", None)
            if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
                rec.first_token()  # the first *content*, not the empty role-only chunk
            if getattr(choices[0], "finish_reason", None) == "content_filter":
                rec.outcome = "refused"
            return True
        # The usage-only chunk we asked for: the app did not ask for it, so it does not see it.
        return not (hide_usage_chunk and getattr(chunk, "usage", None) is not None)
    return on_chunk


def _prepare(kwargs: dict) -> bool:
    """Ask for usage in a stream if the app did not choose; True if we added it."""
    if kwargs.get("stream") and "stream_options" not in kwargs:
        kwargs["stream_options"] = {"include_usage": True}
        return True
    return False


def _wrap(create: Any, defaults: dict[str, Any], is_async: bool) -> Any:
    return wrap_create(create, defaults, is_async, PROVIDER, _on_response, lambda kw: _chunk_handler(_prepare(kw)))


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

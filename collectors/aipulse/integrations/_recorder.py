"""What the provider wrappers share: timing one call, and proxies for streamed responses."""
from __future__ import annotations

import functools

import time
from typing import Any, Callable

from ..client import record
from ..scope import current_interaction, outcome_for


class CallRecorder:
    """Times one provider call and emits it (or folds it into the enclosing interaction)."""

    __slots__ = ("parent", "fields", "t0", "ts", "ttft_ms", "input_tokens", "output_tokens",
                 "outcome", "done")

    def __init__(self, provider: str, model: str, defaults: dict[str, Any]):
        self.parent = current_interaction()
        self.fields = dict(defaults)
        self.fields.setdefault("provider", provider)
        if model:
            self.fields["model"] = model
        self.ts = time.time()
        self.t0 = time.perf_counter()
        self.ttft_ms: float | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.outcome: str | None = None
        self.done = False

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.t0) * 1000.0

    def tokens(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        if input_tokens:
            self.input_tokens = int(input_tokens)
        if output_tokens:
            self.output_tokens = int(output_tokens)

    def set_model(self, model: str | None) -> None:
        if model:
            self.fields["model"] = model

    def finish(self, exc: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        try:
            latency_ms = (time.perf_counter() - self.t0) * 1000.0
            f = self.fields
            if self.parent is not None and self.parent.is_open:
                p = self.parent
                p.add_tokens(self.input_tokens, self.output_tokens)
                for name in ("model", "provider"):
                    if f.get(name) and not p.fields.get(name):
                        p.fields[name] = f[name]
                if self.ttft_ms is not None and p.fields.get("ttft_ms") is None:
                    p.fields["ttft_ms"] = p.elapsed_ms() - latency_ms + self.ttft_ms
                if self.outcome and p.fields.get("outcome", "ok") == "ok":
                    p.fields["outcome"] = self.outcome
                return
            f["latency_ms"] = latency_ms
            f["ts"] = self.ts
            if self.ttft_ms is not None:
                f["ttft_ms"] = self.ttft_ms
            f["input_tokens"] = self.input_tokens
            f["output_tokens"] = self.output_tokens
            if exc is not None:
                f["outcome"] = outcome_for(type(exc))
                f["error_type"] = type(exc).__name__
            elif self.outcome:
                f["outcome"] = self.outcome
            record(**f)
        except Exception:  # the guard: never raise into the app
            pass


class SyncStreamProxy:
    """Iterates a provider's stream for the app, noting first token, usage and the end."""

    def __init__(self, stream: Any, rec: CallRecorder, on_item: Callable[[Any, CallRecorder], bool]):
        self._stream = stream
        self._rec = rec
        self._on_item = on_item  # returns False to hide an item from the app
        self._it = self._iterate()

    def _iterate(self):
        try:
            for item in self._stream:
                try:
                    show = self._on_item(item, self._rec)
                except Exception:
                    show = True
                if show:
                    yield item
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self._rec.finish(exc)
            raise
        self._rec.finish()

    def __iter__(self):
        return self._it

    def __next__(self):
        return next(self._it)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._rec.finish(exc)
        return self._stream.__exit__(exc_type, exc, tb)

    def close(self) -> None:
        self._rec.finish()
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        try:
            self._rec.finish()
        except Exception:
            pass


class AsyncStreamProxy:
    """The asyncio twin of :class:`SyncStreamProxy`."""

    def __init__(self, stream: Any, rec: CallRecorder, on_item: Callable[[Any, CallRecorder], bool]):
        self._stream = stream
        self._rec = rec
        self._on_item = on_item
        self._it = self._iterate()

    async def _iterate(self):
        try:
            async for item in self._stream:
                try:
                    show = self._on_item(item, self._rec)
                except Exception:
                    show = True
                if show:
                    yield item
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self._rec.finish(exc)
            raise
        self._rec.finish()

    def __aiter__(self):
        return self._it

    async def __anext__(self):
        return await self._it.__anext__()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        self._rec.finish(exc)
        return await self._stream.__aexit__(exc_type, exc, tb)

    async def close(self) -> None:
        self._rec.finish()
        await self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        try:
            self._rec.finish()
        except Exception:
            pass


def wrap_create(create: Any, defaults: dict[str, Any], is_async: bool, provider: str,
                on_result: Callable[[Any, CallRecorder], None],
                stream_handler: Callable[[dict], Callable[[Any, CallRecorder], bool]]) -> Any:
    """Wrap a client's ``create`` (sync or async): one recorded interaction per call.

    ``stream_handler(kwargs)`` runs before the call (it reads the request and must never change
    it: the app's request is the app's) and returns the per-item handler used when ``stream=True``;
    ``on_result`` reads a plain response. Written once for every provider.
    """
    if is_async:
        @functools.wraps(create)
        async def acreate(*args: Any, **kwargs: Any) -> Any:
            on_item = stream_handler(kwargs)
            rec = CallRecorder(provider, str(kwargs.get("model") or ""), defaults)
            try:
                result = await create(*args, **kwargs)
            except BaseException as exc:
                rec.finish(exc)
                raise
            if kwargs.get("stream"):
                return AsyncStreamProxy(result, rec, on_item)
            on_result(result, rec)
            rec.finish()
            return result
        return acreate

    @functools.wraps(create)
    def screate(*args: Any, **kwargs: Any) -> Any:
        on_item = stream_handler(kwargs)
        rec = CallRecorder(provider, str(kwargs.get("model") or ""), defaults)
        try:
            result = create(*args, **kwargs)
        except BaseException as exc:
            rec.finish(exc)
            raise
        if kwargs.get("stream"):
            return SyncStreamProxy(result, rec, on_item)
        on_result(result, rec)
        rec.finish()
        return result
    return screate


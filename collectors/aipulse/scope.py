"""``aipulse.interaction(**fields)``: time a model call and record how it ended.

As a context manager (sync or async)::

    with aipulse.interaction(feature="support-chat", model="gpt-4o", user_id=user) as call:
        answer = llm(prompt)
        call.update(input_tokens=812, output_tokens=95, confidence=0.82)
    call.id          # the interaction id, for feedback() and evaluate() later

As a decorator (sync or async functions); inside, :func:`current_interaction` is the handle::

    @aipulse.interaction(feature="summarize")
    async def summarize(text):
        aipulse.current_interaction().update(model="claude-sonnet-4-5")
        ...

An exception leaving the block sets ``outcome`` (``timeout`` for timeouts, ``rejected_input`` /
``rejected_output`` for :class:`RejectedInput` / :class:`RejectedOutput`, else ``error``) and
``error_type`` (the exception's class name), then propagates unchanged: it is the app's.
Any contract field may be given as a keyword; other keywords become ``attributes``.
"""
from __future__ import annotations

import functools
import inspect
import time
from contextvars import ContextVar
from typing import Any, Callable, TypeVar

from . import client as _client_mod

F = TypeVar("F", bound=Callable[..., Any])

_current: ContextVar["Interaction | None"] = ContextVar("aipulse_interaction", default=None)
_perf = time.perf_counter
_now = time.time


class RejectedInput(Exception):
    """Raise inside an interaction when an input validation hook refuses the request."""


class RejectedOutput(Exception):
    """Raise inside an interaction when an output validation hook refuses the answer."""


_OUTCOME_BY_TYPE: dict[type, str] = {}


def outcome_for(exc_type: type) -> str:
    """The contract outcome for an exception class (cached per class)."""
    outcome = _OUTCOME_BY_TYPE.get(exc_type)
    if outcome is None:
        names = [c.__name__ for c in exc_type.__mro__]
        if issubclass(exc_type, RejectedInput):
            outcome = "rejected_input"
        elif issubclass(exc_type, RejectedOutput):
            outcome = "rejected_output"
        elif issubclass(exc_type, TimeoutError) or any("Timeout" in n for n in names):
            outcome = "timeout"  # TimeoutError, asyncio.TimeoutError, openai.APITimeoutError...
        else:
            outcome = "error"
        _OUTCOME_BY_TYPE[exc_type] = outcome
    return outcome


def current_interaction() -> "Interaction | None":
    """The innermost open interaction of this thread / asyncio task, or ``None``."""
    return _current.get()


class Interaction:
    """The handle of one interaction: ``.id``, ``.update(**fields)``, ``.fields``.

    Created by :func:`aipulse.interaction`; used once as a context manager, or as a decorator
    (each call of the decorated function gets its own handle).
    """

    __slots__ = ("fields", "id", "_t0", "_token")

    def __init__(self, fields: dict[str, Any]):
        self.fields = fields
        # ``in`` first: most handles have neither, and two .get() calls cost more than the tests.
        if "interaction_id" in fields or "event_id" in fields:
            self.id: str = fields.get("interaction_id") or fields.get("event_id") or ""
        else:
            self.id = ""
        self._t0 = 0.0
        self._token = None   # set while the block is open

    def update(self, **fields: Any) -> "Interaction":
        """Add what was learned during the call (tokens, model, outcome, confidence...)."""
        self.fields.update(fields)
        return self

    def add_tokens(self, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """Accumulate tokens (several model calls inside one interaction)."""
        f = self.fields
        f["input_tokens"] = (f.get("input_tokens") or 0) + (input_tokens or 0)
        f["output_tokens"] = (f.get("output_tokens") or 0) + (output_tokens or 0)

    @property
    def is_open(self) -> bool:
        """Inside its ``with`` block (entered, not yet left)."""
        return self._token is not None

    def elapsed_ms(self) -> float:
        return (_perf() - self._t0) * 1000.0 if self._t0 else 0.0

    # -------------------------------------------------- context manager

    def __enter__(self) -> "Interaction":
        f = self.fields
        if not self.id:
            self.id = f["event_id"] = _client_mod.next_id()
        elif "event_id" not in f:
            f["event_id"] = _client_mod.next_id() if f.get("interaction_id") else self.id
        f["ts"] = _now()
        self._token = _current.set(self)
        self._t0 = _perf()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        t1 = _perf()
        token = self._token
        if token is None:
            return False
        self._token = None
        try:
            f = self.fields
            if "latency_ms" not in f:
                f["latency_ms"] = (t1 - self._t0) * 1000.0
            if exc_type is not None:
                if f.get("outcome", "ok") == "ok":
                    f["outcome"] = outcome_for(exc_type)
                if not f.get("error_type"):
                    f["error_type"] = exc_type.__name__
            try:
                _current.reset(token)
            except ValueError:  # exited in another context (e.g. a generator): leave it
                pass
            _client_mod._client.submit("interaction", f)
        except Exception:  # pragma: no cover - the guard: never raise into the app
            pass
        return False

    async def __aenter__(self) -> "Interaction":
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)

    # -------------------------------------------------- decorator

    def __call__(self, fn: F) -> F:
        template = dict(self.fields)
        template.pop("event_id", None)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with Interaction(dict(template)):
                    return await fn(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Interaction(dict(template)):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


def interaction(**fields: Any) -> Interaction:
    """Time a model call as a ``with`` block, an ``async with`` block or a decorator."""
    # A function, not the class itself: a class called with keywords repacks them twice.
    return Interaction(fields)

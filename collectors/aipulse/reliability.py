"""The reliability layer as helpers that report themselves: fallback chain, circuit breaker,
timeouts, input/output validation, confidence thresholds.

A fallback chain tries its steps in order (primary model, a simpler model, a cached answer, a
human) and emits **one** interaction per request: ``fallback_depth`` is the step that answered
(0 = primary), ``fallback_reason`` says why each earlier step was passed over
(``primary:timeout;simple:RateLimitError``), ``outcome`` is ``ok`` at depth 0, ``fallback``
deeper, ``escalated`` when the human step answered, and ``error``/``timeout`` when all failed::

    from aipulse.reliability import FallbackChain, Step, breaker_for

    answer = FallbackChain(
        [Step("primary", ask_gpt4o, model="gpt-4o", provider="openai", timeout_s=8,
              breaker=breaker_for("openai", "gpt-4o")),
         Step("simple", ask_mini, model="gpt-4o-mini", provider="openai", timeout_s=4),
         Step("cache", cached_answer, kind="cache"),
         Step("human", hand_to_agent, kind="human")],
        feature="support-chat",
        validate_output=lambda text: bool(text and text.strip()),
        confidence=lambda r: r.confidence, min_confidence=0.6,
    )(question, user_id=user.id)

A circuit breaker (closed -> open after ``failure_threshold`` consecutive failures -> half-open
after ``reset_timeout_s`` -> closed after a successful probe) marks every interaction that
goes through it with ``attributes.circuit`` and ``attributes.circuit_state``, and the one during
which it changed state with ``attributes.circuit_transition`` (``closed>open``); its
``on_state_change`` hook (run after the breaker's lock is released, so it may read or use the
breaker) and the SDK's Prometheus metrics see every transition too. Calls
refused while open raise :class:`CircuitOpenError` (``error_type`` of the interaction).
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .scope import Interaction, RejectedInput, RejectedOutput, current_interaction, interaction

log = logging.getLogger("aipulse")

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RESET_TIMEOUT_S = 30.0
DEFAULT_HALF_OPEN_PROBES = 1
MAX_REASON_LEN = 200

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpenError(RuntimeError):
    """The breaker is open: the call was not attempted."""


class FallbackExhausted(RuntimeError):
    """Every step of a fallback chain failed; ``reasons`` lists why, in order."""

    def __init__(self, reasons: list[str]):
        super().__init__("all fallback steps failed: " + "; ".join(reasons))
        self.reasons = reasons


# ---------------------------------------------------------------- circuit breaker


class CircuitBreaker:
    """Per provider/model breaker. Thread-safe; ``clock`` is injectable for tests.

        >>> b = CircuitBreaker("openai/gpt-4o", failure_threshold=2, reset_timeout_s=30)
        >>> b.failure(); b.failure(); b.state
        'open'
        >>> b.allow()
        False
    """

    def __init__(self, name: str, *, failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
                 reset_timeout_s: float = DEFAULT_RESET_TIMEOUT_S,
                 half_open_probes: int = DEFAULT_HALF_OPEN_PROBES,
                 on_state_change: Callable[[str, str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_timeout_s < 0:
            raise ValueError("reset_timeout_s must be >= 0")
        if half_open_probes < 1:
            raise ValueError("half_open_probes must be >= 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_probes = half_open_probes
        self.on_state_change = on_state_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self.transitions: dict[tuple[str, str], int] = {}
        self._last_transition: str = ""
        # Transitions made under the lock, told to the hook after it is released: a hook
        # that reads the breaker (or calls through it) must not deadlock every caller.
        self._unsent: list[tuple[str, str]] = []
        _BREAKERS[name] = self

    @property
    def state(self) -> str:
        with self._lock:
            self._tick()
            state = self._state
        self._notify()
        return state

    def _tick(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._move(HALF_OPEN)

    def _move(self, new: str) -> None:
        old, self._state = self._state, new
        if new == OPEN:
            self._opened_at = self._clock()
        if new in (HALF_OPEN, CLOSED):
            self._probes = 0
        if new == CLOSED:
            self._failures = 0
        self.transitions[(old, new)] = self.transitions.get((old, new), 0) + 1
        self._last_transition = f"{old}>{new}"
        handle = current_interaction()
        if handle is not None:
            handle.fields.setdefault("attributes", {})["circuit_transition"] = self._last_transition
        self._unsent.append((old, new))

    def _notify(self) -> None:
        """Log and run the hook for transitions made under the lock (call without the lock)."""
        if not self._unsent:
            return
        with self._lock:
            moves, self._unsent = self._unsent, []
        for old, new in moves:
            log.info("aipulse: circuit %s %s -> %s", self.name, old, new)
            if self.on_state_change is not None:
                try:
                    self.on_state_change(self.name, old, new)
                except Exception:
                    log.warning("aipulse: on_state_change hook failed", exc_info=True)

    def allow(self) -> bool:
        """May a call go through now? (Reserves a probe slot when half-open.)"""
        with self._lock:
            self._tick()
            if self._state == CLOSED:
                allowed = True
            elif self._state == HALF_OPEN and self._probes < self.half_open_probes:
                self._probes += 1
                allowed = True
            else:
                allowed = False
        self._notify()
        return allowed

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            if self._state == HALF_OPEN:
                self._move(CLOSED)
        self._notify()

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or (self._state == CLOSED and self._failures >= self.failure_threshold):
                self._move(OPEN)
        self._notify()

    def mark(self, handle: Interaction | None) -> None:
        """Note this breaker and its state on an interaction."""
        if handle is not None:
            attrs = handle.fields.setdefault("attributes", {})
            attrs["circuit"] = self.name
            attrs["circuit_state"] = self.state

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` through the breaker (raises :class:`CircuitOpenError` when open)."""
        handle = current_interaction()
        if not self.allow():
            self.mark(handle)
            raise CircuitOpenError(f"circuit {self.name} is open")
        self.mark(handle)
        try:
            result = fn(*args, **kwargs)
        except RejectedInput:
            raise  # the request's fault, not the provider's
        except Exception:
            self.failure()
            raise
        self.success()
        return result

    async def acall(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        handle = current_interaction()
        if not self.allow():
            self.mark(handle)
            raise CircuitOpenError(f"circuit {self.name} is open")
        self.mark(handle)
        try:
            result = await fn(*args, **kwargs)
        except RejectedInput:
            raise
        except Exception:
            self.failure()
            raise
        self.success()
        return result


_BREAKERS: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def _reset_locks_after_fork() -> None:
    # fork() copies a lock held by another thread of the parent, which does not exist in
    # the child: every breaker call there would wait forever. Breaker state is kept.
    global _breakers_lock
    _breakers_lock = threading.Lock()
    for breaker in list(_BREAKERS.values()):
        breaker._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_locks_after_fork)


def breaker_for(provider: str, model: str, **options: Any) -> CircuitBreaker:
    """The process-wide breaker of one provider/model (created on first use)."""
    name = f"{provider}/{model}"
    with _breakers_lock:
        b = _BREAKERS.get(name)
        if b is None:
            b = CircuitBreaker(name, **options)
        return b


def breakers() -> dict[str, CircuitBreaker]:
    """All breakers of this process, by name (read by the SDK's metrics)."""
    return dict(_BREAKERS)


# ---------------------------------------------------------------- timeouts and validation

def _start_call(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Future:
    """Run ``fn`` on a thread of its own; its result (or exception) lands in the future.

    One daemon thread per call, not a shared bounded pool: a hung provider call keeps only its
    own thread (Python cannot stop a thread), never a slot that later calls wait for. A thread
    costs tens of microseconds, nothing beside a provider call.
    """

    future: Future = Future()
    ctx = contextvars.copy_context()  # so instrumented clients still see the interaction

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = ctx.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the caller, who re-raises it
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name="aipulse-timed-call", daemon=True).start()
    return future


def call_with_timeout(fn: Callable[..., Any], timeout_s: float | None, *args: Any, **kwargs: Any) -> Any:
    """Run a sync ``fn`` with a deadline; ``TimeoutError`` when it passes.

    The call runs on a thread of its own and keeps running after the deadline (Python cannot
    stop a thread); give the client its own timeout too. ``None`` calls ``fn`` directly.

        >>> call_with_timeout(lambda x: x * 2, 1.0, 21)
        42
    """
    if timeout_s is None:
        return fn(*args, **kwargs)
    future = _start_call(fn, args, kwargs)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        future.cancel()
        raise TimeoutError(f"call exceeded {timeout_s} s") from None


async def acall_sync_with_timeout(fn: Callable[..., Any], timeout_s: float | None, *args: Any,
                                  **kwargs: Any) -> Any:
    """From asyncio, run a sync ``fn`` on its own thread (the event loop keeps running), with
    an optional deadline (``TimeoutError``)."""
    future = asyncio.wrap_future(_start_call(fn, args, kwargs))
    if timeout_s is None:
        return await future
    try:
        return await asyncio.wait_for(future, timeout_s)
    except asyncio.TimeoutError:
        raise TimeoutError(f"call exceeded {timeout_s} s") from None


async def acall_with_timeout(fn: Callable[..., Any], timeout_s: float | None, *args: Any, **kwargs: Any) -> Any:
    """Await ``fn(*args, **kwargs)`` with a deadline (the coroutine is cancelled at it)."""
    if timeout_s is None:
        return await fn(*args, **kwargs)
    try:
        return await asyncio.wait_for(fn(*args, **kwargs), timeout_s)
    except asyncio.TimeoutError:
        raise TimeoutError(f"call exceeded {timeout_s} s") from None


def check_input(ok: bool, reason: str = "input rejected") -> None:
    """Inside an interaction: refuse the request (outcome ``rejected_input``) unless ``ok``."""
    if not ok:
        raise RejectedInput(reason)


def check_output(ok: bool, reason: str = "output rejected") -> None:
    """Inside an interaction: refuse the answer (outcome ``rejected_output``) unless ``ok``."""
    if not ok:
        raise RejectedOutput(reason)


class ConfidenceGate:
    """Escalate to a human when the model's confidence is below a threshold.

        gate = ConfidenceGate(0.6)
        with aipulse.interaction(feature="triage") as call:
            label, p = classify(ticket)
            if gate.check(p):          # sets confidence; outcome "escalated" when below
                route_to_human(ticket)
    """

    def __init__(self, threshold: float, on_escalate: Callable[[Interaction | None], None] | None = None):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in 0..1")
        self.threshold = threshold
        self.on_escalate = on_escalate

    def check(self, confidence: float, handle: Interaction | None = None) -> bool:
        handle = handle or current_interaction()
        low = confidence < self.threshold
        if handle is not None:
            handle.update(confidence=confidence)
            if low and handle.fields.get("outcome", "ok") == "ok":
                handle.update(outcome="escalated")
        if low and self.on_escalate is not None:
            self.on_escalate(handle)
        return low


# ---------------------------------------------------------------- fallback chain


@dataclass
class Step:
    """One rung of a fallback chain. ``kind``: model, cache (sets ``cached``) or human
    (answering means ``escalated``)."""

    name: str
    fn: Callable[..., Any]
    model: str = ""
    provider: str = ""
    kind: Literal["model", "cache", "human"] = "model"
    timeout_s: float | None = None
    breaker: CircuitBreaker | None = None


@dataclass
class FallbackChain:
    """Try steps in order; emit one interaction describing which answered and why."""

    steps: list[Step]
    feature: str = ""
    validate_input: Callable[..., bool] | None = None
    validate_output: Callable[[Any], bool] | None = None
    confidence: Callable[[Any], float | None] | None = None
    min_confidence: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a fallback chain needs at least one step")
        if len(self.steps) > 17:
            raise ValueError("at most 17 steps (fallback_depth is 0..16)")

    # the bookkeeping shared by the sync and async paths

    def _begin(self, extra: dict[str, Any], args: tuple, kwargs: dict) -> Interaction:
        fields = dict(self.fields)
        fields.update(extra)
        if self.feature:
            fields.setdefault("feature", self.feature)
        return interaction(**fields)

    def _before(self, h: Interaction, step: Step, reasons: list[str]) -> bool:
        h.fields.pop("model", None)
        h.fields.pop("provider", None)
        if step.breaker is not None:
            if not step.breaker.allow():
                step.breaker.mark(h)
                reasons.append(f"{step.name}:circuit_open")
                return False
            step.breaker.mark(h)
        return True

    def _judge(self, h: Interaction, step: Step, result: Any, reasons: list[str]) -> bool:
        if self.validate_output is not None and not self.validate_output(result):
            reasons.append(f"{step.name}:rejected_output")
            if step.breaker is not None:
                step.breaker.success()  # the provider answered; the answer was bad
            return False
        conf = self.confidence(result) if self.confidence is not None else None
        if conf is not None:
            h.fields["confidence"] = conf
        if (conf is not None and self.min_confidence is not None and conf < self.min_confidence
                and step.kind != "human"):
            reasons.append(f"{step.name}:low_confidence")
            if step.breaker is not None:
                step.breaker.success()
            return False
        if step.breaker is not None:
            step.breaker.success()
        return True

    def _failed(self, step: Step, exc: BaseException, reasons: list[str], errors: list[BaseException]) -> None:
        errors.append(exc)
        why = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        reasons.append(f"{step.name}:{why}")
        if step.breaker is not None:
            step.breaker.failure()

    def _answered(self, h: Interaction, depth: int, step: Step, reasons: list[str]) -> None:
        h.fields["fallback_depth"] = depth
        if step.model:
            h.fields["model"] = step.model
        if step.provider:
            h.fields["provider"] = step.provider
        if reasons:
            h.fields["fallback_reason"] = ";".join(reasons)[:MAX_REASON_LEN]
        if step.kind == "cache":
            h.fields["cached"] = True
        h.fields["outcome"] = "escalated" if step.kind == "human" else ("ok" if depth == 0 else "fallback")

    def _exhausted(self, h: Interaction, reasons: list[str], errors: list[BaseException]) -> FallbackExhausted:
        h.fields["fallback_depth"] = len(self.steps) - 1
        h.fields["fallback_reason"] = ";".join(reasons)[:MAX_REASON_LEN]
        last = reasons[-1].rsplit(":", 1)[-1] if reasons else "error"
        h.fields["outcome"] = {"timeout": "timeout", "rejected_output": "rejected_output"}.get(last, "error")
        h.fields["error_type"] = type(errors[-1]).__name__ if errors else "FallbackExhausted"
        return FallbackExhausted(reasons)

    def __call__(self, *args: Any, aipulse_fields: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Run the chain synchronously; ``aipulse_fields`` adds fields for this request only."""
        with self._begin(aipulse_fields or {}, args, kwargs) as h:
            if self.validate_input is not None and not self.validate_input(*args, **kwargs):
                raise RejectedInput("input rejected")
            reasons: list[str] = []
            errors: list[BaseException] = []
            for depth, step in enumerate(self.steps):
                if not self._before(h, step, reasons):
                    continue
                try:
                    result = call_with_timeout(step.fn, step.timeout_s, *args, **kwargs)
                except Exception as exc:
                    self._failed(step, exc, reasons, errors)
                    continue
                if self._judge(h, step, result, reasons):
                    self._answered(h, depth, step, reasons)
                    return result
            raise self._exhausted(h, reasons, errors)

    async def acall(self, *args: Any, aipulse_fields: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Run the chain from asyncio: async steps are awaited, sync steps run on a thread of
        their own, so the event loop never waits for them."""
        async with self._begin(aipulse_fields or {}, args, kwargs) as h:
            if self.validate_input is not None and not self.validate_input(*args, **kwargs):
                raise RejectedInput("input rejected")
            reasons: list[str] = []
            errors: list[BaseException] = []
            for depth, step in enumerate(self.steps):
                if not self._before(h, step, reasons):
                    continue
                try:
                    if inspect.iscoroutinefunction(step.fn):
                        result = await acall_with_timeout(step.fn, step.timeout_s, *args, **kwargs)
                    else:  # a sync step must not block the event loop: it runs on a thread
                        result = await acall_sync_with_timeout(step.fn, step.timeout_s, *args, **kwargs)
                except Exception as exc:
                    self._failed(step, exc, reasons, errors)
                    continue
                if self._judge(h, step, result, reasons):
                    self._answered(h, depth, step, reasons)
                    return result
            raise self._exhausted(h, reasons, errors)

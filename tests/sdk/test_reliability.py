"""Fallback chain, circuit breaker, timeouts, validation and confidence: the events they emit."""
from __future__ import annotations

import asyncio
import time

import pytest

import aipulse
from aipulse.contract import parse_event
from aipulse.reliability import (
    CircuitBreaker,
    CircuitOpenError,
    ConfidenceGate,
    FallbackChain,
    FallbackExhausted,
    Step,
    call_with_timeout,
    check_output,
)

from .conftest import consume


class RateLimitError(Exception):
    pass


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def failing(*args, **kwargs):
    raise RateLimitError("429")


def slow(*args, **kwargs):
    time.sleep(0.3)
    return "late"


def answer(text):
    return lambda *args, **kwargs: text


def test_fallback_chain_records_depth_reason_and_outcome(captured):
    chain = FallbackChain([
        Step("primary", failing, model="gpt-4o", provider="openai"),
        Step("simple", slow, model="gpt-4o-mini", provider="openai", timeout_s=0.05),
        Step("cache", answer("cached answer"), kind="cache"),
        Step("human", answer("ticket #1"), kind="human"),
    ], feature="support-chat")
    assert chain("where is my order?") == "cached answer"
    (ev,) = captured.events
    assert ev["fallback_depth"] == 2 and ev["outcome"] == "fallback" and ev["cached"] is True
    assert ev["fallback_reason"] == "primary:RateLimitError;simple:timeout"
    assert ev["feature"] == "support-chat" and ev["model"] == ""


def test_primary_answer_is_ok_at_depth_zero_and_human_is_escalation(captured):
    FallbackChain([Step("primary", answer("fine"), model="gpt-4o")])("q")
    gate = FallbackChain([Step("primary", answer("unsure"), model="gpt-4o"), Step("human", answer("agent"), kind="human")],
                         confidence=lambda r: 0.3 if r == "unsure" else 1.0, min_confidence=0.6)
    assert gate("q") == "agent"
    bad = FallbackChain([Step("primary", answer(""), model="gpt-4o"), Step("simple", answer("ok"), model="gpt-4o-mini")],
                        validate_output=bool)
    assert bad("q") == "ok"
    first, escalated, rejected = captured.events
    assert (first["fallback_depth"], first["outcome"], first["model"]) == (0, "ok", "gpt-4o")
    assert (escalated["outcome"], escalated["fallback_reason"], escalated["fallback_depth"]) == \
        ("escalated", "primary:low_confidence", 1)
    assert (rejected["outcome"], rejected["fallback_reason"], rejected["model"]) == \
        ("fallback", "primary:rejected_output", "gpt-4o-mini")


def test_exhausted_chain_and_rejected_input(captured):
    chain = FallbackChain([Step("a", failing), Step("b", failing)], validate_input=lambda q: bool(q.strip()))
    with pytest.raises(FallbackExhausted) as err:
        chain("q")
    assert err.value.reasons == ["a:RateLimitError", "b:RateLimitError"]
    with pytest.raises(aipulse.RejectedInput):
        chain("   ")
    exhausted, rejected = captured.events
    assert (exhausted["outcome"], exhausted["error_type"], exhausted["fallback_depth"]) == \
        ("error", "RateLimitError", 1)
    assert rejected["outcome"] == "rejected_input"


def test_async_chain(captured):
    async def primary(q):
        await asyncio.sleep(1)

    async def simple(q):
        return q.upper()

    chain = FallbackChain([Step("primary", primary, model="m1", timeout_s=0.05), Step("simple", simple, model="m2")])
    assert asyncio.run(chain.acall("hi")) == "HI"
    ev = captured.events[0]
    assert (ev["fallback_depth"], ev["fallback_reason"], ev["model"]) == (1, "primary:timeout", "m2")


def test_circuit_breaker_states_are_recorded_on_interactions(captured):
    clock = FakeClock()
    changes = []
    breaker = CircuitBreaker("openai/gpt-4o", failure_threshold=2, reset_timeout_s=10, clock=clock,
                             on_state_change=lambda name, old, new: changes.append((old, new)))

    def call(fn):
        try:
            with aipulse.interaction(feature="chat", model="gpt-4o"):
                breaker.call(fn)
        except (RateLimitError, CircuitOpenError):
            pass

    call(failing)                   # closed, 1 failure
    call(failing)                   # closed -> open
    call(answer("x"))               # refused while open
    clock.t += 11
    call(answer("x"))               # open -> half_open (probe) -> closed
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    evs = captured.events
    states = [(e["outcome"], e["error_type"], e["attributes"].get("circuit_state"),
               e["attributes"].get("circuit_transition", "")) for e in evs]
    assert states == [
        ("error", "RateLimitError", "closed", ""),
        ("error", "RateLimitError", "closed", "closed>open"),
        ("error", "CircuitOpenError", "open", ""),
        ("ok", "", "half_open", "half_open>closed"),
    ]
    assert all(e["attributes"]["circuit"] == "openai/gpt-4o" for e in evs)


def test_breaker_inside_a_chain_skips_the_open_step(captured):
    clock = FakeClock()
    breaker = CircuitBreaker("openai/gpt-4o-chain", failure_threshold=1, reset_timeout_s=30, clock=clock)
    chain = FallbackChain([Step("primary", failing, model="gpt-4o", breaker=breaker),
                           Step("simple", answer("ok"), model="gpt-4o-mini")])
    chain("q")
    chain("q")
    first, second = captured.events
    assert first["fallback_reason"] == "primary:RateLimitError"
    assert first["attributes"]["circuit_transition"] == "closed>open"
    assert second["fallback_reason"] == "primary:circuit_open" and second["attributes"]["circuit_state"] == "open"


def test_timeouts_validation_and_confidence_gate(captured):
    with pytest.raises(TimeoutError):
        with aipulse.interaction(feature="t"):
            call_with_timeout(slow, 0.05)
    with pytest.raises(aipulse.RejectedOutput):
        with aipulse.interaction(feature="v"):
            check_output(False, "empty answer")
    escalated = []
    gate = ConfidenceGate(0.6, on_escalate=escalated.append)
    with aipulse.interaction(feature="triage") as call:
        assert gate.check(0.4) is True
    with aipulse.interaction(feature="triage"):
        assert gate.check(0.9) is False
    evs = captured.events
    assert [e["outcome"] for e in evs] == ["timeout", "rejected_output", "escalated", "ok"]
    assert evs[2]["confidence"] == 0.4 and escalated == [call]


@pytest.mark.integration
def test_fallback_and_breaker_scenarios_end_to_end_through_kafka(sdk, sdk_kafka, topic):
    clock = FakeClock()
    breaker = CircuitBreaker("anthropic/claude-e2e", failure_threshold=2, reset_timeout_s=5, clock=clock)
    chain = FallbackChain([Step("primary", failing, model="claude-sonnet-4-5", provider="anthropic", breaker=breaker),
                           Step("cache", answer("cached"), kind="cache"),
                           Step("human", answer("agent"), kind="human")], feature="e2e")
    for _ in range(3):
        chain("q")
    clock.t += 6
    breaker_ok = FallbackChain([Step("primary", answer("fine"), model="claude-sonnet-4-5", breaker=breaker)],
                               feature="e2e")
    breaker_ok("q")
    assert aipulse.flush(10)
    events = [parse_event(r.value) for r in consume(sdk_kafka, topic, 4)]
    assert [(e.outcome, e.fallback_depth, e.fallback_reason) for e in events] == [
        ("fallback", 1, "primary:RateLimitError"),
        ("fallback", 1, "primary:RateLimitError"),
        ("fallback", 1, "primary:circuit_open"),
        ("ok", 0, ""),
    ]
    assert [e.attributes.get("circuit_transition") for e in events] == [None, "closed>open", None, "half_open>closed"]
    assert all(e.cached for e in events[:3])

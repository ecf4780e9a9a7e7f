"""The public surface: no-op before init, interaction as context manager and decorator,
record / feedback / evaluate, outcomes from exceptions, never raising into the app."""
from __future__ import annotations

import asyncio

import pytest

import aipulse
from aipulse import client as client_mod
from aipulse.client import NoopClient


def test_everything_is_a_silent_noop_before_init():
    assert isinstance(client_mod.get_client(), NoopClient)
    with aipulse.interaction(feature="x") as call:
        call.update(input_tokens=3)
    assert call.id
    assert aipulse.record(feature="x", latency_ms=1.0)
    assert aipulse.feedback("abc", "thumbs_up")
    assert aipulse.evaluate("abc", correct=True)
    assert aipulse.flush(0.1) == aipulse.FlushResult(delivered=0, dropped={}, pending=0)
    aipulse.close()
    st = aipulse.stats()
    assert st["enabled"] is False and st["emitted"] == 0


def test_public_surface_is_declared():
    for name in ("init", "interaction", "record", "feedback", "evaluate", "flush", "close", "stats"):
        assert name in aipulse.__all__ and callable(getattr(aipulse, name))


def test_interaction_context_manager_records_timing_and_fields(captured):
    with aipulse.interaction(feature="chat", model="gpt-4o", provider="openai", customer_tier="gold") as call:
        call.update(input_tokens=100, output_tokens=20, confidence=0.9)
    (ev,) = captured.events
    assert ev["kind"] == "interaction" and ev["event_id"] == call.id == ev["interaction_id"]
    assert ev["feature"] == "chat" and ev["outcome"] == "ok" and ev["latency_ms"] >= 0
    assert ev["input_tokens"] == 100 and ev["confidence"] == 0.9 and ev["service"] == "test"
    assert ev["attributes"] == {"customer_tier": "gold"}  # unknown keywords are kept as attributes
    assert ev["cost_source"] == "genai-prices" and ev["cost_usd"] > 0
    assert captured.keys == [call.id.encode()]


def test_exception_sets_outcome_and_error_type_and_propagates(captured):
    class RateLimitError(Exception):
        pass

    with pytest.raises(RateLimitError):
        with aipulse.interaction(feature="chat"):
            raise RateLimitError("slow down")
    with pytest.raises(TimeoutError):
        with aipulse.interaction(feature="chat"):
            raise TimeoutError()
    with pytest.raises(aipulse.RejectedInput):
        with aipulse.interaction(feature="chat"):
            raise aipulse.RejectedInput("prompt injection")
    outcomes = [(e["outcome"], e["error_type"]) for e in captured.events]
    assert outcomes == [("error", "RateLimitError"), ("timeout", "TimeoutError"),
                        ("rejected_input", "RejectedInput")]


def test_decorator_sync_and_async_and_current_interaction(captured):
    @aipulse.interaction(feature="summarize", model="claude-sonnet-4-5")
    def summarize(text):
        aipulse.current_interaction().update(output_tokens=len(text))
        return text[:3]

    @aipulse.interaction(feature="classify")
    async def classify(text):
        await asyncio.sleep(0.01)
        aipulse.current_interaction().update(confidence=0.4)
        if text == "bad":
            raise ValueError(text)
        return "label"

    assert summarize("hello") == "hel"
    assert summarize("hi") == "hi"
    assert asyncio.run(classify("ok")) == "label"
    with pytest.raises(ValueError):
        asyncio.run(classify("bad"))
    evs = captured.events
    assert [e["feature"] for e in evs] == ["summarize", "summarize", "classify", "classify"]
    assert evs[0]["event_id"] != evs[1]["event_id"]  # one handle per call
    assert evs[0]["output_tokens"] == 5 and evs[2]["latency_ms"] >= 10
    assert evs[3]["outcome"] == "error" and evs[3]["error_type"] == "ValueError"
    assert aipulse.current_interaction() is None


def test_async_with(captured):
    async def main():
        async with aipulse.interaction(feature="voice") as call:
            await asyncio.sleep(0)
            call.update(ttft_ms=12.5)
        return call.id

    iid = asyncio.run(main())
    assert captured.events[0]["interaction_id"] == iid and captured.events[0]["ttft_ms"] == 12.5


def test_record_feedback_evaluate(captured):
    iid = aipulse.record(feature="import", model="gpt-4o", latency_ms=812.5, ts=1_700_000_000,
                         input_tokens=10, output_tokens=5, cost_usd=0.5)
    fid = aipulse.feedback(iid, "thumbs_down", comment="wrong", user_id="alice")
    eid = aipulse.evaluate(iid, correct=False, score=0.2, source="human", evaluator="qa")
    inter, fb, ev = captured.events
    assert inter["interaction_id"] == iid and inter["ts"].startswith("2023-11-14T22:13:20")
    assert inter["cost_usd"] == 0.5 and inter["cost_source"] == "app"
    assert fb["event_id"] == fid and fb["interaction_id"] == iid and fb["feedback_type"] == "thumbs_down"
    assert "comment" not in fb  # text is off by default
    assert fb["user_id"] and fb["user_id"] != "alice"
    assert ev["event_id"] == eid and ev["correct"] is False and ev["source"] == "human"
    # the three land in the same partition: same key
    assert len(set(captured.keys)) == 1


def test_invalid_events_never_raise_into_the_app(captured):
    aipulse.record(feature="x", latency_ms=-5)                 # negative latency
    aipulse.evaluate("abc")                                    # neither correct nor score
    aipulse.feedback("abc", "not-a-type")
    with aipulse.interaction(feature="x") as call:
        call.update(attributes={"k": float("nan")})
    assert len(captured.invalid) == 4 and not captured.events
    assert "latency_ms" in captured.invalid[0]


def test_unknown_model_has_no_cost(captured):
    aipulse.record(model="acme-private-7b", input_tokens=10, output_tokens=10, latency_ms=1)
    ev = captured.events[0]
    assert ev["cost_source"] == "unknown" and "cost_usd" not in ev


def test_init_validates_options_at_once():
    with pytest.raises(ValueError, match="max_queue_events"):
        aipulse.init(max_queue_events=0)
    with pytest.raises(ValueError, match="unknown aipulse option"):
        aipulse.init(max_queue_event=10)
    assert isinstance(client_mod.get_client(), NoopClient)


def test_disabled_is_a_noop(monkeypatch):
    monkeypatch.setenv("AIPULSE_DISABLED", "1")
    aipulse.init()
    try:
        assert aipulse.stats()["enabled"] is False
    finally:
        aipulse.close()

"""The openai and anthropic wrappers, driving the real client libraries against a local
server that imitates the providers (JSON and SSE streaming). No network."""
from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest

import aipulse
from aipulse.integrations.anthropic import instrument_anthropic
from aipulse.integrations.openai import instrument_openai

from .fake_providers import FIRST_TOKEN_DELAY_S, FakeProviders

MSGS = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def providers():
    with FakeProviders() as srv:
        yield srv


def oa(providers, cls=openai.OpenAI, **kw):
    return instrument_openai(cls(api_key="test", base_url=providers.openai_url, max_retries=0, timeout=5),
                             feature="chat", **kw)


def an(providers, cls=anthropic.Anthropic):
    return instrument_anthropic(cls(api_key="test", base_url=providers.anthropic_url, max_retries=0, timeout=5),
                                feature="summarize")


def test_openai_plain_call(captured, providers):
    reply = oa(providers).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert reply.choices[0].message.content == "Hello there"  # the app's result is untouched
    (ev,) = captured.events
    assert (ev["provider"], ev["model"], ev["feature"]) == ("openai", "gpt-4o-2024", "chat")
    assert (ev["input_tokens"], ev["output_tokens"]) == (11, 7)
    assert ev["latency_ms"] > 0 and ev["outcome"] == "ok" and ev["cost_source"] in ("genai-prices", "unknown")


def test_openai_stream_records_ttft_and_leaves_the_request_alone(captured, providers):
    stream = oa(providers).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    chunks = list(stream)
    assert all(c.choices for c in chunks)  # no usage chunk: the app did not ask for one
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello!"
    assert "stream_options" not in providers.requests[-1][1]
    (ev,) = captured.events
    assert (ev["input_tokens"], ev["output_tokens"]) == (0, 0)  # usage only when the app asks
    assert ev["ttft_ms"] >= FIRST_TOKEN_DELAY_S * 1000 * 0.9 and ev["latency_ms"] >= ev["ttft_ms"]


def test_openai_stream_with_apps_own_stream_options_and_context_manager(captured, providers):
    client = oa(providers)
    with client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,
                                        stream_options={"include_usage": True}) as stream:
        chunks = [c for c in stream]
    assert not chunks[-1].choices and chunks[-1].usage.prompt_tokens == 13  # the app asked for it
    assert captured.events[0]["output_tokens"] == 3


def test_openai_async_plain_and_streamed(captured, providers):
    client = oa(providers, cls=openai.AsyncOpenAI)

    async def main():
        reply = await client.chat.completions.create(model="gpt-4o", messages=MSGS)
        stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,
                                                      stream_options={"include_usage": True})
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return reply, text

    reply, text = asyncio.run(main())
    assert reply.usage.total_tokens == 18 and text == "Hello!"
    plain, streamed = captured.events
    assert (plain["input_tokens"], plain["output_tokens"]) == (11, 7) and "ttft_ms" not in plain
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (13, 3) and streamed["ttft_ms"] > 0


def test_openai_errors_and_refusals(captured, providers):
    client = oa(providers)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fail-429", messages=MSGS)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fail-500", messages=MSGS)
    slow = instrument_openai(openai.OpenAI(api_key="t", base_url=providers.openai_url, max_retries=0, timeout=0.2))
    with pytest.raises(openai.APITimeoutError):
        slow.chat.completions.create(model="slow", messages=MSGS)
    client.chat.completions.create(model="refuse", messages=MSGS)
    got = [(e["outcome"], e["error_type"]) for e in captured.events]
    assert got == [("error", "RateLimitError"), ("error", "InternalServerError"),
                   ("timeout", "APITimeoutError"), ("refused", "")]


def test_wrapped_call_inside_an_interaction_fills_it_instead_of_emitting(captured, providers):
    client = oa(providers)
    with aipulse.interaction(feature="agent-turn") as turn:
        client.chat.completions.create(model="gpt-4o", messages=MSGS)
        client.chat.completions.create(model="gpt-4o", messages=MSGS)
    (ev,) = captured.events
    assert ev["interaction_id"] == turn.id and ev["feature"] == "agent-turn"
    assert (ev["input_tokens"], ev["output_tokens"], ev["model"]) == (22, 14, "gpt-4o-2024")


def test_instrumenting_twice_is_harmless(captured, providers):
    client = oa(providers)
    instrument_openai(client)
    client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(captured.events) == 1


def test_anthropic_plain_streamed_and_stream_helper(captured, providers):
    client = an(providers)
    msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MSGS)
    assert msg.content[0].text == "Hi!"
    events = list(client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MSGS, stream=True))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MSGS) as stream:
        assert "".join(stream.text_stream) == "Hi!"
    plain, streamed, helper = captured.events
    for ev in (plain, streamed, helper):
        assert (ev["provider"], ev["model"], ev["feature"]) == ("anthropic", "claude-sonnet-4-5", "summarize")
        assert (ev["input_tokens"], ev["output_tokens"]) == (21, 9) and ev["latency_ms"] > 0
        assert ev["cost_source"] == "genai-prices" and ev["cost_usd"] > 0
    assert streamed["ttft_ms"] >= FIRST_TOKEN_DELAY_S * 1000 * 0.9


def test_anthropic_async_and_errors(captured, providers):
    client = an(providers, cls=anthropic.AsyncAnthropic)

    async def main():
        msg = await client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MSGS)
        stream = await client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MSGS, stream=True)
        kinds = [e.type async for e in stream]
        async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MSGS) as s:
            final = await s.get_final_message()
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model="fail-429", max_tokens=64, messages=MSGS)
        await client.messages.create(model="refuse", max_tokens=64, messages=MSGS)
        return msg, kinds, final

    msg, kinds, final = asyncio.run(main())
    assert msg.usage.output_tokens == 9 and kinds[-1] == "message_stop" and final.content[0].text == "Hi!"
    evs = captured.events
    assert [(e["input_tokens"], e["output_tokens"]) for e in evs[:3]] == [(21, 9)] * 3
    assert evs[1]["ttft_ms"] > 0
    assert (evs[3]["outcome"], evs[3]["error_type"]) == ("error", "RateLimitError")
    assert evs[4]["outcome"] == "refused"

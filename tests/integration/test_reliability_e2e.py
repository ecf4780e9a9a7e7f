"""Issue 4: the SDK's fallback chain and circuit breaker produce the expected events, end to
end through the real broker and worker, visible in ClickHouse (raw rows and window metrics)."""
from __future__ import annotations

import time

import pytest

from support import wait_for

pytestmark = pytest.mark.integration


def _rows(ch, service, cols):
    return ch.query(f"SELECT {cols} FROM aipulse.interactions FINAL WHERE service = %(s)s ORDER BY ts",
                    {"s": service}).result_rows


def test_fallback_chain_and_circuit_breaker_reach_clickhouse(stack, stack_settings, kafka_bootstrap, ch, service_name):
    import aipulse
    from aipulse.reliability import CircuitBreaker, FallbackChain, Step
    from aipulse_stream.readside.query import metrics_query

    class ProviderDown(Exception):
        pass

    def primary(q):
        raise ProviderDown("503")

    def simple(q):
        return f"simple answer to {q}"

    aipulse.init(kafka_bootstrap=kafka_bootstrap, service=service_name)
    started = time.time()
    try:
        breaker = CircuitBreaker("openai/gpt-4o", failure_threshold=3, reset_timeout_s=3600)
        chain = FallbackChain(
            [Step("primary", primary, model="gpt-4o", provider="openai", breaker=breaker),
             Step("simple", simple, model="gpt-4o-mini", provider="openai"),
             Step("human", lambda q: "handed to an agent", kind="human")],
            feature="support-chat")
        answers = [chain(f"q{i}") for i in range(6)]
        assert all(a.startswith("simple answer") for a in answers)
        # The human handoff: every model step fails.
        human_chain = FallbackChain(
            [Step("primary", primary, model="gpt-4o", provider="openai"),
             Step("human", lambda q: "handed to an agent", kind="human")], feature="support-chat")
        assert human_chain("hard question") == "handed to an agent"
        assert aipulse.flush(30)
    finally:
        aipulse.close()

    rows = wait_for(lambda: (r := _rows(ch, service_name, "model, outcome, fallback_depth, fallback_reason, attributes"))
                    and len(r) == 7 and r, timeout=60, what="7 interactions of the fallback scenario")
    human_rows = [r for r in rows if r[1] == "escalated"]
    chain_rows = [r for r in rows if r[1] != "escalated"]
    assert len(human_rows) == 1 and human_rows[0][2] == 1 and human_rows[0][0] == ""
    assert all(r[0] == "gpt-4o-mini" and r[1] == "fallback" and r[2] == 1 for r in chain_rows), chain_rows
    reasons = sorted(r[3] for r in chain_rows)
    # The breaker counts three failures, then refuses the primary at once.
    assert reasons == ["primary:ProviderDown"] * 3 + ["primary:circuit_open"] * 3
    transitions = [r[4].get("circuit_transition") for r in chain_rows]
    assert transitions.count("closed>open") == 1
    assert sorted(r[4].get("circuit_state") for r in chain_rows if r[3] == "primary:circuit_open") == ["open"] * 3

    # The window metrics count them as the dashboards will show them.
    def figures():
        got = metrics_query(ch, stack_settings, ["service"], started - 60, time.time() + 60,
                            where={"service": [service_name]})
        return got and got[0]["requests"] == 7 and got[0]
    fig = wait_for(figures, timeout=60, what="the window rows of the fallback scenario")
    assert fig["fallbacks"] == 7 and fig["escalations"] == 1 and fig["errors"] == 0

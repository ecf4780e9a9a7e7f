"""Configuration from arguments and environment; prices; privacy defaults."""
from __future__ import annotations

import doctest

import pytest

import aipulse.config
import aipulse.contract
import aipulse.costs
import aipulse.governance
import aipulse.transport
from aipulse.config import Config
from aipulse.costs import Pricer
from aipulse.governance import Governance, redact_common


def test_arguments_win_over_environment_which_wins_over_defaults():
    env = {"AIPULSE_KAFKA_BOOTSTRAP": "k1:9092,k2:9092", "AIPULSE_TOPIC": "t", "AIPULSE_SERVICE": "svc",
           "AIPULSE_MAX_QUEUE_EVENTS": "1_000", "AIPULSE_CAPTURE_TEXT": "yes"}
    cfg = Config.load(env=env, topic="mine")
    assert cfg.bootstrap_servers == "k1:9092,k2:9092" and cfg.topic == "mine" and cfg.service == "svc"
    assert cfg.max_queue_events == 1000 and cfg.capture_text is True
    assert Config.load(env={}).topic == "aipulse.events"


@pytest.mark.parametrize("env,match", [
    ({"AIPULSE_MAX_QUEUE_EVENTS": "many"}, "not an integer"),
    ({"AIPULSE_CAPTURE_TEXT": "maybe"}, "not a boolean"),
    ({"AIPULSE_COMPRESSION": "brotli"}, "compression"),
])
def test_bad_environment_fails_loudly(env, match):
    with pytest.raises(ValueError, match=match):
        Config.load(env=env)


def test_bad_price_override_fails_loudly():
    with pytest.raises(ValueError, match="price_overrides"):
        Config.load(env={}, price_overrides={"m": (1.0,)})


def test_prices_from_genai_prices_and_overrides():
    p = Pricer({"acme-ft": (2.0, 4.0)})
    assert p.price("acme-ft", "", 500_000, 250_000) == (2.0, "override")
    usd, source = p.price("gpt-4o", "openai", 1000, 500)
    assert source == "genai-prices" and usd == pytest.approx(0.0075)
    usd, source = p.price("claude-sonnet-4-5", "anthropic", 1000, 500)
    assert source == "genai-prices" and usd > 0
    assert p.price("no-such-model", "", 1, 1) == (None, "unknown")
    ev = {"model": "gpt-4o", "input_tokens": 0, "output_tokens": 0}
    p.fill(ev)
    assert "cost_source" not in ev  # no tokens: nothing to price


def test_user_ids_hashed_with_salt_and_text_off_by_default():
    g = Governance(Config.load(env={}, user_salt="a"))
    ev = {"user_id": "alice", "prompt": "secret", "response": "answer"}
    g.apply(ev)
    assert ev == {"user_id": g.hash_user_id("alice")} and len(ev["user_id"]) == 32
    other = Governance(Config.load(env={}, user_salt="b"))
    assert other.hash_user_id("alice") != ev["user_id"]
    raw = Governance(Config.load(env={}, hash_user_ids=False))
    ev = {"user_id": "alice"}
    raw.apply(ev)
    assert ev["user_id"] == "alice"


def test_text_truncated_and_redacted_when_enabled():
    g = Governance(Config.load(env={}, user_salt="s", capture_text=True, max_text_chars=30, redact=redact_common))
    ev = {"prompt": "call +1 555 123 4567 or mail x@y.org " + "z" * 100, "response": "ok"}
    g.apply(ev)
    assert ev["prompt"].startswith("call [number] or mail [email]") and len(ev["prompt"]) == 30
    assert ev["response"] == "ok"


def test_failing_redaction_hook_removes_the_text():
    def broken(text, field):
        raise RuntimeError("bug in the hook")

    g = Governance(Config.load(env={}, user_salt="s", capture_text=True, redact=broken))
    ev = {"prompt": "secret"}
    g.apply(ev)
    assert "prompt" not in ev


@pytest.mark.parametrize("module", [aipulse.config, aipulse.costs, aipulse.governance, aipulse.contract,
                                    aipulse.transport])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

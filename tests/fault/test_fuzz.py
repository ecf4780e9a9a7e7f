"""Scenario 6: fuzzing. Hypothesis-generated events (valid and invalid: unicode, huge strings,
deep attributes and JSON nesting, wrong types, extreme numbers, bad timestamps) and raw garbage
bytes, straight onto the topic (10,000 cases) and through the SDK (2,000 calls).

The expected verdict of every topic case comes from the contract itself (the worker's
Validator: parse_event + size and ts checks); the worker must agree exactly: every invalid
message on the DLQ once, with its original bytes and an `aipulse-reason` header (the same
reason), every valid one stored (by event_id), window metrics exact for the valid ones, and
the worker never crashes (same pid, healthy at the end). Through the SDK: every call is sent
or counted invalid by the SDK; whatever the SDK sends is stored or dead-lettered with a reason.
"""
from __future__ import annotations

import json
import math
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import aipulse
from fault.helpers import KafkaProducer_, TopicWorkers, raw_counts, read_topic, row, stored_event_ids, wait_exact
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]

TOPIC_CASES = 10_000
SDK_CASES = 2_000
DAY = 86400.0

# ---------------------------------------------------------------- strategies
# Each case is a valid event (unicode names, extreme but finite numbers) with, half of the time,
# one fault applied: a wrong type, a huge string, deep or too many attributes, a bad timestamp, a
# non-finite or negative number, a bogus kind, a missing field, broken or deeply nested JSON,
# garbage bytes. One fault per case keeps both verdicts frequent (and generation fast).

any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5,
)
numbers = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False), st.integers(min_value=0, max_value=10**6),
    st.sampled_from([0, 0.0, 5e-324, 1e-300, 2**53, 1e300, 1.7976931348623157e308, -0.0]),
)
counts = st.one_of(st.integers(min_value=0, max_value=10**5), st.sampled_from([0, 2**53]))
names = st.one_of(st.sampled_from(["chat", "search", "gpt-4o", "claude-3", "", "canary"]), st.text(max_size=24))
OUTCOMES = ["ok", "error", "timeout", "fallback", "escalated", "refused", "rejected_input", "rejected_output"]
FEEDBACK = ["thumbs_up", "thumbs_down", "task_completed", "task_failed", "escalation_resolved", "human_correction"]
SOURCES = ["ground_truth", "shadow", "human", "auto"]
SIZES = [201] * 4 + [1_001] * 4 + [40_000] * 2 + [270_000, 300_000]  # limits: 200, 1000 chars; 256 KiB (up to 3.6 MB escaped)
FAULTS = ["none"] * 9 + ["wrong_type", "huge", "deep_attributes", "many_attributes", "bad_ts", "non_finite",
                          "negative", "big_int", "bogus_kind", "missing", "schema_version", "truncated",
                          "deep_json", "garbage", "json_value"]


def ts_ok(now: float):
    return st.floats(min_value=-29 * DAY, max_value=300).map(lambda off: now + off)


def interaction(now: float):
    return st.fixed_dictionaries(
        {"kind": st.just("interaction"), "ts": ts_ok(now), "latency_ms": numbers,
         "service": st.sampled_from(["@S0", "@S1", "@S2"])},
        optional={"feature": names, "model": names, "variant": names, "outcome": st.sampled_from(OUTCOMES),
                  "input_tokens": counts, "output_tokens": counts, "ttft_ms": numbers, "cost_usd": numbers,
                  "confidence": st.floats(0, 1), "fallback_depth": st.integers(0, 16), "shadow": st.booleans(),
                  "user_id": names, "rollout_stage": st.floats(0, 100), "interaction_id": st.text(min_size=1, max_size=8),
                  "attributes": st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.integers()
                                                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                                                max_size=4),
                  "prompt": st.text(max_size=40), "unknown_field": any_json})


def feedback(now: float):
    return st.fixed_dictionaries(
        {"kind": st.just("feedback"), "ts": ts_ok(now), "interaction_id": st.sampled_from([f"i{k}" for k in range(9)]),
         "feedback_type": st.sampled_from(FEEDBACK), "service": st.sampled_from(["@S0", "@S1"])},
        optional={"score": st.floats(allow_nan=False, allow_infinity=False), "comment": st.text(max_size=30)})


def evaluation(now: float):
    return st.fixed_dictionaries(
        {"kind": st.just("evaluation"), "ts": ts_ok(now), "interaction_id": st.sampled_from([f"i{k}" for k in range(9)]),
         "correct": st.booleans(), "service": st.sampled_from(["@S0", "@S2"])},
        optional={"source": st.sampled_from(SOURCES), "score": st.floats(0, 1), "label": names})


@st.composite
def event_dicts(draw, now: float):
    """(event dict, fault applied, id suffix): a valid event, then at most one fault."""
    d = dict(draw(st.one_of(interaction(now), interaction(now), feedback(now), evaluation(now))))
    if draw(st.integers(0, 9)) == 0:
        d["service"] = draw(st.text(max_size=30))  # a unicode service (not in the metrics check)
    fault = draw(st.sampled_from(FAULTS))
    field = draw(st.sampled_from(sorted(k for k in d if k != "kind") + ["event_id"]))
    if fault == "wrong_type":
        d[field] = draw(any_json)
    elif fault == "huge":
        unit = draw(st.text(min_size=1, max_size=2))
        size = draw(st.sampled_from(SIZES))
        d[draw(st.sampled_from(["feature", "model", "user_id", "event_id", "prompt", "comment", "label"]))] = (unit * size)[:size]
    elif fault == "deep_attributes":
        d["attributes"] = draw(st.dictionaries(st.text(max_size=3), st.recursive(
            st.integers(), lambda c: st.dictionaries(st.text(max_size=3), c, min_size=1, max_size=2), max_leaves=6),
            min_size=1, max_size=2))
    elif fault == "many_attributes":
        d["attributes"] = {f"a{k}": k for k in range(draw(st.integers(60, 70)))}
    elif fault == "bad_ts":
        d["ts"] = draw(st.one_of(
            st.floats(min_value=31 * DAY, max_value=3000 * DAY).map(lambda off: now - off),
            st.floats(min_value=900, max_value=3000 * DAY).map(lambda off: now + off),
            st.sampled_from([-1, 4e10, True, None, "2024-13-01", "yesterday", "1e30", ""]), any_json))
    elif fault == "non_finite":
        d[draw(st.sampled_from(["latency_ms", "score", "ts", "cost_usd", "confidence"]))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    elif fault == "negative":
        d[draw(st.sampled_from(["latency_ms", "input_tokens", "ttft_ms", "fallback_depth"]))] = draw(
            st.sampled_from([-1, -1e-9, -(2**63)]))
    elif fault == "big_int":
        d[draw(st.sampled_from(["input_tokens", "latency_ms", "fallback_depth"]))] = draw(
            st.sampled_from([2**53 + 1, 2**64, 10**400]))
    elif fault == "bogus_kind":
        d["kind"] = draw(any_json)
    elif fault == "missing":
        d.pop(draw(st.sampled_from(["kind", "ts", "latency_ms", "feedback_type", "correct", "interaction_id"])), None)
        if d.get("kind") == "evaluation":
            d.pop("score", None)
    elif fault == "schema_version":
        d["schema_version"] = draw(st.sampled_from(["2.0", "0.9", "", "x"]) | any_json)
    return d, fault, draw(st.text(max_size=8))


@st.composite
def topic_cases(draw, now: float):
    """(key, case) of one message; case is ("raw", bytes) or (fault, dict, id suffix, ascii, cut)."""
    key = draw(st.none() | st.binary(max_size=12))
    d, fault, suffix = draw(event_dicts(now))
    if fault == "garbage":
        return key, ("raw", draw(st.binary(max_size=200)))
    if fault == "json_value":
        return key, ("raw", json.dumps(draw(any_json)).encode())
    return key, (fault, d, suffix, draw(st.booleans()), draw(st.integers(min_value=1, max_value=20_000)))


def collect(strategy, n: int) -> list:
    out: list = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(case):
        out.append(case)

    gather()
    return out


def encode(case, prefix: str, i: int) -> bytes:
    """The wire bytes of a drawn case; event ids are unique by construction (prefix-i~suffix)."""
    what, *rest = case
    if what == "raw":
        return rest[0]
    d, suffix, ascii_only, cut = rest
    d = dict(d)
    if isinstance(d.get("service"), str) and d["service"].startswith("@S"):
        d["service"] = f"{prefix}-{d['service'][1:]}"
    if "event_id" not in d:
        d["event_id"] = f"{prefix}-{i}~{suffix}"
    elif isinstance(d["event_id"], str):
        d["event_id"] = f"{prefix}-{i}~" + d["event_id"]  # a drawn (maybe huge) id, still unique
    if "interaction_id" in d and isinstance(d["interaction_id"], str):
        d["interaction_id"] = f"{prefix}-{d['interaction_id']}"
    if what == "deep_json":
        raw = json.dumps(d, allow_nan=True)
        return (raw[:-1] + ', "nested": ' + '{"a": ' * cut + "1" + "}" * cut + "}").encode()
    raw = json.dumps(d, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", errors="surrogatepass")
    if what == "truncated":
        return raw[: cut % max(1, len(raw))]
    return raw


# ---------------------------------------------------------------- the test

def test_fuzz_topic_and_sdk(stack, stack_settings, kafka_bootstrap, ch):
    from aipulse.contract import parse_event
    from aipulse_stream.transforms.validate import Rejected, Validator

    prefix = f"z{uuid.uuid4().hex[:6]}"
    group = TopicWorkers(stack_settings, kafka_bootstrap)
    group.start()
    pid = group.info["pid"]
    try:
        t0 = time.monotonic()
        now = time.time()
        cases = collect(topic_cases(now), TOPIC_CASES)
        gen_s = time.monotonic() - t0
        assert len(cases) >= TOPIC_CASES * 0.99, len(cases)  # hypothesis may skip a few repeats
        validator = Validator(group.settings)
        messages = []
        for i, (key, case) in enumerate(cases):
            value = encode(case, prefix, i)
            verdict = validator.check(value, time.time())
            messages.append((key, value, verdict))
        valid = [m for m in messages if not isinstance(m[2], Rejected)]
        print(f"\n{len(messages)} topic cases generated in {gen_s:.1f}s: {len(valid)} valid, "
              f"{len(messages) - len(valid)} invalid; {sum(len(m[1]) for m in messages) / 1e6:.1f} MB")

        producer = KafkaProducer_(kafka_bootstrap)
        futures = [producer.send(group.topic, key=k, value=v) for k, v, _ in messages]
        producer.flush(120)
        meta = [f.get(timeout=60) for f in futures]
        producer.close()
        sent_at = time.monotonic()
        where = {(md.partition, md.offset): msg for md, msg in zip(meta, messages)}
        expect_dlq = {po for po, (_k, _v, verdict) in where.items() if isinstance(verdict, Rejected)}
        expect_ids = {verdict.event_id for _k, _v, verdict in valid}
        assert len(expect_ids) == len(valid)  # unique by construction
        assert all(e.startswith(prefix + "-") for e in expect_ids)

        # Through the SDK: the same kinds of values as keyword arguments of the public API.
        sdk_prefix = prefix + "s"
        sdk_calls = collect(event_dicts(now), SDK_CASES)
        aipulse.init(kafka_bootstrap=kafka_bootstrap, topic=group.topic, service=f"{sdk_prefix}-app", user_salt="s",
                     max_queue_events=50_000, max_queue_bytes=1 << 30, warn_interval_s=3600,
                     ledger_interval_s=0)  # the worker does not store sdk_stats yet (issue 11): it would DLQ it
        try:
            for i, (d, _fault, _suffix) in enumerate(sdk_calls):
                fields = {k: v for k, v in d.items() if k not in ("kind",)}
                if isinstance(fields.get("service"), str) and fields["service"].startswith("@S"):
                    fields.pop("service")
                fields["event_id"] = f"{sdk_prefix}-{i}"
                if not (isinstance(fields.get("ts"), (int, float)) and not isinstance(fields.get("ts"), bool)):
                    fields.pop("ts", None)  # the SDK stamps now (its API takes epoch seconds)
                kind = d.get("kind")
                if kind == "feedback":
                    iid = fields.pop("interaction_id", "i0")
                    ftype = fields.pop("feedback_type", "thumbs_up")
                    aipulse.feedback(iid if isinstance(iid, str) else str(iid), ftype, **fields)
                elif kind == "evaluation":
                    iid = fields.pop("interaction_id", "i0")
                    aipulse.evaluate(iid if isinstance(iid, str) else str(iid), **fields)
                else:
                    aipulse.record(**fields)
            assert aipulse.flush(120), aipulse.stats()
            sdk = aipulse.stats()
        finally:
            aipulse.close(timeout=5)
        print(f"SDK: {sdk}")
        # Checked at the end, after the topic cases' verdicts: every SDK call is sent, invalid, or
        # over max_event_bytes (the SDK drops as `oversized` what the worker would dead-letter).
        sdk_accounting_ok = sdk["emitted"] == len(sdk_calls) and \
            sdk["sent"] + sdk["dropped"]["invalid"] + sdk["dropped"]["oversized"] == sdk["emitted"]

        # The worker's verdicts: stored ids and dead letters.
        def all_stored():
            # (the SDK's ids start with sdk_prefix, which the topic prefix does not match)
            return (len(stored_event_ids(ch, prefix, group.settings)) >= len(expect_ids)
                    and len(stored_event_ids(ch, sdk_prefix, group.settings)) >= sdk["sent"] - len(sdk_dlq()))

        dlq_records: list = []

        def sdk_dlq():
            return [r for r in dlq_records if (r.headers and dict(r.headers).get("aipulse-source", b"").decode()
                                               .rsplit("/", 2)[0] == group.topic
                                               and tuple(int(x) for x in dict(r.headers)["aipulse-source"].decode()
                                                         .rsplit("/", 2)[1:]) not in where)]

        def dlq_complete():
            dlq_records[:] = read_topic(kafka_bootstrap, group.dlq_topic, timeout=30, idle_s=3)
            return len(dlq_records) >= len(expect_dlq)

        wait_for(dlq_complete, timeout=150, interval=2, what=f"{len(expect_dlq)} dead letters")
        wait_for(all_stored, timeout=120, interval=1, what="the valid events stored")
        caught_up = time.monotonic()

        # raw, not FINAL: duplicates would show
        stored_topic = stored_event_ids(ch, prefix, group.settings)
        stored_sdk = stored_event_ids(ch, sdk_prefix, group.settings)
        stored = stored_topic + stored_sdk
        headers = [dict(r.headers or []) for r in dlq_records]
        sources = []
        wrong_reason = []
        for r, h in zip(dlq_records, headers):
            src = h.get("aipulse-source", b"").decode()
            topic, p, o = src.rsplit("/", 2)
            assert topic == group.topic
            po = (int(p), int(o))
            sources.append(po)
            reason = h.get("aipulse-reason", b"").decode()
            assert reason, f"dead letter without a reason: {src}"
            if po in where:
                _k, value, verdict = where[po]
                assert r.value == value, f"dead letter {src} does not carry the original bytes"
                want = verdict.reason.encode("utf-8", errors="replace")[:1000].decode("utf-8", errors="ignore")
                if not want.startswith("ts is") and reason != want:
                    wrong_reason.append((src, reason, want))
        topic_sources = [s for s in sources if s in where]
        sdk_dead = [(s, dict(h)["aipulse-reason"].decode()) for s, h in zip(sources, headers) if s not in where]
        missing = expect_ids - set(stored_topic)
        unexpected = set(stored_topic) - expect_ids

        # Window metrics of the valid topic events of the generated services (`@S*`).
        services = [f"{prefix}-S{k}" for k in range(3)]
        triples = sorted(((p, o, where[(p, o)][2]) for (p, o) in where if (p, o) not in expect_dlq),
                         key=lambda t: (t[0], t[1]))
        in_scope = [t for t in triples if t[2].service in services]
        diffs = wait_exact(group.settings, triples, services) if in_scope else []
        health = group.healthy()
        row("6 fuzz: 10,000 topic cases + 2,000 SDK calls", sent=len(messages) + sdk["sent"],
            stored=len(set(stored)), duplicates=len(stored) - len(set(stored)), metric_differences=len(diffs),
            recovery_s=caught_up - sent_at, valid=len(expect_ids), invalid_on_dlq=len(set(topic_sources)),
            expected_invalid=len(expect_dlq), sdk_invalid=sdk["dropped"]["invalid"], sdk_dead_lettered=len(sdk_dead),
            worker_pid_unchanged=group.info["pid"] == pid, reason_mismatches=len(wrong_reason))
        assert not missing, f"{len(missing)} valid events not stored, e.g. {sorted(missing)[:5]}"
        assert not unexpected, f"stored but invalid: {sorted(unexpected)[:5]}"
        assert len(stored) == len(set(stored))
        assert sorted(topic_sources) == sorted(expect_dlq), "dead letters differ from the contract's verdicts"
        assert not wrong_reason, wrong_reason[:5]
        # What the SDK sent is stored once, or dead-lettered only for what it cannot know (ts vs now).
        assert len(stored_sdk) + len(sdk_dead) == sdk["sent"], (len(stored_sdk), len(sdk_dead), sdk)
        assert all(reason.startswith("ts is") for _s, reason in sdk_dead), sdk_dead[:5]
        assert not diffs, "\n".join(diffs[:30])
        assert group.info["pid"] == pid and all(health.values()), health
        assert sdk_accounting_ok, f"SDK calls neither sent, invalid nor oversized: {sdk}"
    finally:
        group.stop()

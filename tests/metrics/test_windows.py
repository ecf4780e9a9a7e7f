"""WindowAggregator: exact counts, lateness, shadow, joins, and crash-replay determinism."""
from __future__ import annotations

import pytest
from gen import T0, generate
from harness import TOPIC, MemoryStore, run_stream

from aipulse.contract import Evaluation, Feedback, Interaction
from aipulse_stream.config import Settings
from oracles.exact import exact_metrics
from aipulse_stream.readside.query import SUM_FIGURES
from aipulse_stream.transforms.join import JoinedKey
from aipulse_stream.transforms.windows import WindowAggregator

S = Settings(offset_block=100, window_s=10, allowed_lateness_s=60)
CHAT = JoinedKey("svc", "chat", "m1", "a", int(T0 * 1000))


def ix(i, ts=T0, **kw):
    base = dict(event_id=f"i{i}", ts=ts, service="svc", feature="chat", model="m1", variant="a", latency_ms=100.0)
    base.update(kw)
    return Interaction(**base)


def only(rows, **match):
    got = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(got) == 1, got
    return got[0]


def test_counts_of_one_window():
    agg = WindowAggregator(S, TOPIC)
    agg.set_start(0, 0, None)
    events = [
        ix(1, outcome="ok", input_tokens=10, output_tokens=5, cost_usd=0.01, user_id="u1", ttft_ms=20.0),
        ix(2, outcome="error", cost_usd=None, user_id="u1"),
        ix(3, outcome="timeout", fallback_depth=2, confidence=0.2, cached=True, user_id="u2"),
        ix(4, outcome="escalated", rollout_stage=5.0),
        ix(5, outcome="fallback"),  # depth not reported: still a fallback
        ix(6, shadow=True, latency_ms=5000.0),
    ]
    for o, e in enumerate(events):
        assert agg.add(0, o, e, None)
    (row,) = agg.drain_rows()
    assert (row["requests"], row["errors"], row["timeouts"], row["fallbacks"], row["escalations"]) == (5, 2, 1, 2, 1)
    assert row["fallback_depth"] == {2: 1}
    assert (row["low_confidence"], row["cached"], row["cost_missing"], row["ttft_count"]) == (1, 1, 4, 1)
    assert row["cost_usd"] == pytest.approx(0.01) and row["input_tokens"] == 10
    assert row["latency_sum_ms"] == 500.0 and sum(row["latency_buckets"].values()) == 5
    assert len(row["users"]) == 2 and row["shadow_requests"] == 1
    assert row["rollout_stage"] == 5.0 and row["version"] == 5 and row["block"] == 0
    assert row["window_start"].timestamp() == T0 and row["window_s"] == 10


def test_feedback_and_evaluations_go_to_the_joined_key_in_their_own_window():
    agg = WindowAggregator(S, TOPIC)
    agg.set_start(0, 0, None)
    agg.add(0, 0, ix(1))
    fb = lambda i, t, ts=T0 + 15: Feedback(event_id=f"f{i}", interaction_id="i1", ts=ts, service="svc", feedback_type=t)
    agg.add(0, 1, fb(1, "thumbs_up"), CHAT)
    agg.add(0, 2, fb(2, "thumbs_down"), CHAT)
    agg.add(0, 3, fb(3, "human_correction"), CHAT)
    agg.add(0, 4, Evaluation(event_id="e1", interaction_id="i1", ts=T0 + 15, correct=True, score=0.5), CHAT)
    agg.add(0, 5, Evaluation(event_id="e2", interaction_id="i1", ts=T0 + 15, correct=False), CHAT)
    agg.add(0, 6, Evaluation(event_id="e3", interaction_id="i1", ts=T0 + 15, source="shadow", correct=False), CHAT)
    agg.add(0, 7, Evaluation(event_id="e4", interaction_id="i1", ts=T0 + 15, source="shadow", correct=True), CHAT)
    agg.add(0, 8, fb(4, "thumbs_up"), None)  # orphaned
    rows = agg.drain_rows()
    later = only(rows, feature="chat", window_start=rows[0]["window_start"].fromtimestamp(T0 + 10, rows[0]["window_start"].tzinfo))
    assert (later["feedback_up"], later["feedback_down"], later["corrections"]) == (1, 1, 1)
    assert (later["evaluated"], later["correct"], later["eval_scored"], later["eval_score_sum"]) == (2, 1, 1, 0.5)
    assert (later["shadow_pairs"], later["shadow_disagreements"], later["requests"]) == (2, 1, 0)
    orphan = only(rows, feature="")
    assert orphan["orphaned"] == 1 and orphan["service"] == "svc" and orphan["feedback_up"] == 0


def test_late_events_only_count_as_late():
    agg = WindowAggregator(S, TOPIC)
    agg.set_start(0, 0, None)
    agg.add(0, 0, ix(1, ts=T0 + 1000))
    agg.add(0, 1, ix(2, ts=T0 + 1000 - 60))    # exactly at the bound: on time
    agg.add(0, 2, ix(3, ts=T0 + 1000 - 60.001))  # 1 ms behind it: late
    agg.add(0, 3, Feedback(event_id="f", interaction_id="i1", ts=T0, feedback_type="thumbs_up"), CHAT)
    rows = agg.drain_rows()
    assert sum(r["requests"] for r in rows) == 2 and sum(r["late"] for r in rows) == 2
    assert sum(r["feedback_up"] for r in rows) == 0
    late_ix = only(rows, window_start=rows[0]["window_start"].fromtimestamp(T0 + 930, rows[0]["window_start"].tzinfo))
    assert late_ix["late"] == 1 and late_ix["requests"] == 0
    (prog,) = agg.drain_progress()
    assert prog["late"] == 2 and prog["watermark_ms"] == (T0 + 1000) * 1000 and prog["version"] == 3


def test_watermark_from_the_previous_block_decides_lateness_after_a_restart():
    agg = WindowAggregator(S, TOPIC)
    agg.set_start(0, 3, T0 + 1000)      # as read from partition_progress at the end of block 2
    agg.add(0, 300, ix(1, ts=T0))       # 1000 s behind: late, although it is the first event
    (row,) = agg.drain_rows()
    assert row["late"] == 1 and row["requests"] == 0 and row["block"] == 3


def test_ackable_only_at_drained_block_ends_and_redelivery_is_ignored():
    agg = WindowAggregator(S, TOPIC)
    agg.set_start(0, 0, None)
    for o in range(150):
        agg.add(0, o, ix(o))
    assert agg.ackable(0) is None       # nothing drained yet
    rows = agg.drain_rows()
    assert {r["block"] for r in rows} == {0, 1}
    assert agg.ackable(0) == 99         # block 0 complete and drained; commit 100
    assert [p["block"] for p in agg.drain_progress()] == [0, 1]
    assert not agg.add(0, 120, ix(120)) and agg.duplicates_skipped == 1
    for o in range(150, 260):
        agg.add(0, o, ix(o))
    assert agg.ackable(0) == 99         # block 1 and 2 not drained yet
    rows = agg.drain_rows()
    assert {r["block"] for r in rows} == {1, 2} and agg.ackable(0) == 199
    assert [p["block"] for p in agg.drain_progress()] == [1, 2]
    # Full block state each time: block 2's rows, though unchanged, come again.
    agg.add(0, 260, ix(260, ts=T0 + 500))
    again = agg.drain_rows()
    assert {r["block"] for r in again} == {2} and len(again) == 2
    assert agg.ackable(1) is None


def test_a_replayed_block_reproduces_its_rows_exactly():
    records = [r for r in generate(3000, seed=11) if r[0] == 0]
    first = WindowAggregator(S, TOPIC)
    first.set_start(0, 0, None)
    for p, o, e in records:
        first.add(p, o, e, None)
    full = {(r["block"], r["window_start"], r["feature"], r["model"], r["variant"], r["service"]): r
            for r in first.drain_rows()}
    # Replay from block 4's start, with the watermark block 3 ended with.
    wm = [p for p in first.drain_progress() if p["block"] == 3][0]["watermark_ms"] / 1000
    replay = WindowAggregator(S, TOPIC)
    replay.set_start(0, 4, wm)
    for p, o, e in records:
        replay.add(p, o, e, None)  # offsets before block 4 are skipped
    again = replay.drain_rows()
    assert again and all(r["block"] >= 4 for r in again)
    for r in again:
        assert full[(r["block"], r["window_start"], r["feature"], r["model"], r["variant"], r["service"])] == r


@pytest.mark.parametrize("seed,batch,crashes", [(1, 300, 6), (2, 1500, 4), (3, 60, 8)])
def test_crashes_at_random_moments_leave_identical_rows(seed, batch, crashes):
    records = generate(6000, seed=seed)
    settings = Settings(offset_block=250)
    clean, crashy = MemoryStore(), MemoryStore()
    run_stream(records, settings, clean, seed=seed)
    restarts = run_stream(records, settings, crashy, batch_size=batch, crashes=crashes, seed=seed)
    assert restarts == crashes
    assert crashy.windows == clean.windows
    assert crashy.progress == clean.progress


def test_stored_rows_sum_to_the_exact_figures():
    records = generate(8000, seed=5)
    store = MemoryStore()
    run_stream(records, Settings(offset_block=300), store, crashes=3, seed=5)
    want = exact_metrics(records, Settings(offset_block=300))[()]
    for name in SUM_FIGURES:
        got = sum(r[name] for r in store.windows.values())
        assert got == pytest.approx(want[name], rel=1e-9, abs=1e-9), name
    assert want["late"] > 0 and want["orphaned"] > 0 and want["shadow_pairs"] > 0 and want["requests"] > 0


def test_duplicate_event_ids_are_dropped_within_a_block_deterministically():
    agg = WindowAggregator(S, TOPIC)
    agg.set_start(0, 0, None)
    assert agg.add(0, 10, ix(1)) and not agg.add(0, 11, ix(1))   # same block: dropped
    assert agg.add(0, 120, ix(1))                                  # next block: counted
    rows = agg.drain_rows()
    assert sum(r["requests"] for r in rows) == 2 and agg.duplicates_dropped == 1
    records = [(0, 10, ix(1)), (0, 11, ix(1)), (0, 120, ix(1))]
    assert exact_metrics(records, S)[()]["requests"] == 2
    # A replay of block 1 alone (restart there) decides the same way for its offsets.
    again = WindowAggregator(S, TOPIC)
    again.set_start(0, 1, T0)
    for p, o, e in records:
        again.add(p, o, e)
    assert [r["requests"] for r in again.drain_rows()] == [1]

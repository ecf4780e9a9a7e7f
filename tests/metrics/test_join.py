"""JoinResolver: cache, store lookup, offset-order rule and horizon; warm = cold."""
from __future__ import annotations

from gen import T0
from harness import MemoryStore

from aipulse.contract import Evaluation, Feedback, Interaction
from aipulse_stream.config import Settings
from aipulse_stream.transforms.join import JoinedKey, JoinResolver

S = Settings(join_horizon_s=3600)


def ix(iid, ts=T0, feature="chat"):
    return Interaction(event_id=iid, ts=ts, service="svc", feature=feature, model="m", variant="v", latency_ms=1.0)


def fb(eid, iid, ts=T0 + 10):
    return Feedback(event_id=eid, interaction_id=iid, ts=ts, service="svc", feedback_type="thumbs_up")


def test_in_batch_cache_store_order_and_horizon():
    store = MemoryStore()
    old = [(0, 0, ix("a")), (0, 1, ix("b", feature="sum")), (1, 0, ix("c"))]
    store.insert_raw(old)
    r = JoinResolver(S, lookup=store.lookup)
    batch = [
        (0, 5, fb("f1", "a")),                        # from the store (not in cache)
        (0, 6, ix("d")), (0, 7, fb("f2", "d")),        # same batch, earlier offset
        (0, 8, fb("f3", "e")), (0, 9, ix("e")),        # feedback before its interaction: orphaned
        (0, 10, fb("f4", "c")),                        # interaction in another partition: orphaned
        (0, 11, fb("f5", "b", ts=T0 + 3601)),          # past the horizon: orphaned
        (0, 12, Evaluation(event_id="v1", interaction_id="b", ts=T0 + 3600, correct=True)),  # at the horizon
        (0, 13, fb("f6", "zzz")),                      # unknown
    ]
    out = r.resolve(batch)
    assert out["f1"] == JoinedKey("svc", "chat", "m", "v", int(T0 * 1000))
    assert out["f2"].feature == "chat" and out["v1"].feature == "sum"
    assert [out[k] for k in ("f3", "f4", "f5", "f6")] == [None] * 4
    assert r.store_lookups > 0 and r.cache_hits == 1


def test_cold_resolver_answers_like_the_warm_one():
    """A replay after a restart (empty cache, everything from ClickHouse) joins the same way,
    even where the warm cache already knows an interaction that came after the feedback."""
    batch1 = [(0, 0, ix("a")), (0, 1, fb("f0", "x"))]
    batch2 = [(0, 2, ix("x")), (0, 3, fb("f1", "a")), (0, 4, fb("f2", "x"))]
    store = MemoryStore()
    warm = JoinResolver(S, lookup=store.lookup)
    first = {**warm.resolve(batch1)}
    store.insert_raw(batch1)
    first.update(warm.resolve(batch2))
    store.insert_raw(batch2)
    assert first["f0"] is None and first["f1"] and first["f2"]
    # Replay the same offsets in the same process (rebalance: warm cache knows "x" at 2).
    again = {**warm.resolve(batch1), **warm.resolve(batch2)}
    cold = JoinResolver(S, lookup=store.lookup)
    replay = {**cold.resolve(batch1), **cold.resolve(batch2)}
    assert first == again == replay


def test_cache_is_bounded_lru():
    r = JoinResolver(S, cache_size=3)
    for i in range(5):
        r.observe(0, i, ix(f"i{i}"))
    assert len(r) == 3
    out = r.resolve([(0, 10, fb("f", "i0")), (0, 11, fb("g", "i4"))])
    assert out["f"] is None and out["g"] is not None  # no lookup configured: evicted = unknown

"""A deterministic generated stream for the metrics tests: heavy tails and every edge case.

``generate(n)`` returns ``(partition, offset, event)`` triples in offset order per partition
(partition = hash of the interaction id, as the Kafka producer's key would give): several
services, features, models and variants; lognormal and Pareto latencies; errors, timeouts,
fallbacks with depths, escalations, refusals, rejections; shadow interactions and shadow
evaluations; feedback and evaluations joined, orphaned (unknown id, feedback before its
interaction, expired past the horizon); late events; missing costs and ttft.
"""
from __future__ import annotations

import gc
import random
import time
import zlib
from dataclasses import dataclass

from aipulse.contract import Evaluation, Feedback, Interaction

# Midnight UTC two days ago: windows, hours and days all start on it, and the tables' TTLs
# (days from now) keep what the tests write.
T0 = float((int(time.time()) // 86400 - 2) * 86400)
SERVICES = ("support", "search")
FEATURES = ("chat", "summarize", "classify")
MODELS = ("gpt-4o", "claude-3", "llama-3")
VARIANTS = ("", "baseline", "canary")
OUTCOMES = (("ok", 0.86), ("error", 0.03), ("timeout", 0.02), ("fallback", 0.03),
            ("escalated", 0.02), ("refused", 0.01), ("rejected_input", 0.015), ("rejected_output", 0.015))


@dataclass
class Spec:
    partitions: int = 3
    duration_s: float = 3 * 3600       # event time span
    late_fraction: float = 0.01       # events sent with ts far behind
    feedback_fraction: float = 0.3
    eval_fraction: float = 0.2
    shadow_fraction: float = 0.05
    orphan_fraction: float = 0.01     # feedback with an unknown interaction id
    horizon_s: int = 7 * 86400


def latency(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.7:
        return rng.lognormvariate(5.5, 0.8)          # ~250 ms median
    if r < 0.98:
        return 100 * rng.paretovariate(1.3)          # heavy tail
    if r < 0.99:
        return rng.uniform(0, 0.02)                  # sub-0.01 ms and zero-ish
    return 0.0


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def generate(n: int, seed: int = 7, spec: Spec | None = None) -> list[tuple[int, int, object]]:
    # Hundreds of thousands of live models make the cyclic GC rescan them over and over
    # (quadratic time); they hold no cycles, so pause it while building, and freeze them
    # afterwards so that the collections the aggregator triggers skip them too.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        out = _generate(n, seed, spec or Spec())
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
    return out


def _generate(n: int, seed: int, spec: Spec) -> list[tuple[int, int, object]]:
    rng = random.Random(seed)
    outcomes, weights = zip(*OUTCOMES)
    stream: list[object] = []       # in send order
    interactions: list[Interaction] = []
    # Interactions older than the join horizon, sent first (so not late): feedback about
    # them later is expired, hence orphaned.
    ancient = []
    for j in range(max(1, n // 2000)):
        ev = Interaction(event_id=f"old{seed}-{j}", ts=T0 - spec.horizon_s - 3600 + j, service=SERVICES[0],
                         feature="chat", model="gpt-4o", latency_ms=100.0, cost_usd=0.001)
        ancient.append(ev)
        stream.append(ev)
    for i in range(n):
        ts = T0 + spec.duration_s * i / n + rng.uniform(-2, 2)
        if rng.random() < spec.late_fraction:
            ts -= rng.uniform(100, 400)  # behind the watermark by more than 60 s
        outcome = rng.choices(outcomes, weights)[0]
        depth = rng.choice((1, 1, 2, 3)) if outcome == "fallback" or rng.random() < 0.02 else 0
        shadow = rng.random() < spec.shadow_fraction
        ev = Interaction(
            event_id=f"i{seed}-{i}", ts=max(ts, 0), service=rng.choice(SERVICES),
            feature=rng.choice(FEATURES), model=rng.choice(MODELS), variant=rng.choice(VARIANTS),
            rollout_stage=rng.choice((None, 5.0, 50.0)), user_id=f"u{rng.randrange(5000)}" if rng.random() < 0.9 else "",
            latency_ms=latency(rng), ttft_ms=rng.lognormvariate(4, 1) if rng.random() < 0.6 else None,
            input_tokens=rng.randrange(2000), output_tokens=rng.randrange(800),
            cost_usd=round(rng.uniform(0, 0.05), 6) if rng.random() < 0.95 else None,
            outcome=outcome, fallback_depth=depth, confidence=rng.random() if rng.random() < 0.5 else None,
            shadow=shadow, cached=rng.random() < 0.1,
        )
        # Feedback before its interaction: orphaned by rule (the join looks only backwards).
        if rng.random() < 0.002:
            stream.append(Feedback(event_id=f"f{seed}-early-{i}", interaction_id=ev.interaction_id,
                                   ts=ev.ts, service=ev.service, feedback_type="thumbs_up"))
        stream.append(ev)
        interactions.append(ev)
        # Later events about recent interactions.
        if rng.random() < spec.feedback_fraction:
            expired = rng.random() < 0.01
            target = (rng.choice(ancient) if expired
                      else interactions[max(0, len(interactions) - 1 - rng.randrange(50))])
            fts = ts if expired else max(target.ts.timestamp() + rng.uniform(0, 30), ts)
            ftype = rng.choice(("thumbs_up", "thumbs_up", "thumbs_down", "task_completed",
                                "task_failed", "human_correction", "escalation_resolved"))
            stream.append(Feedback(event_id=f"f{seed}-{i}", interaction_id=target.interaction_id,
                                   ts=fts, service=target.service, feedback_type=ftype))
        if rng.random() < spec.eval_fraction:
            target = interactions[max(0, len(interactions) - 1 - rng.randrange(50))]
            source = "shadow" if rng.random() < 0.25 else rng.choice(("ground_truth", "human", "auto"))
            correct = rng.random() < 0.8 if rng.random() < 0.9 else None
            score = rng.random() if correct is None or rng.random() < 0.3 else None
            stream.append(Evaluation(event_id=f"e{seed}-{i}", interaction_id=target.interaction_id,
                                     ts=max(target.ts.timestamp(), ts), service=target.service, source=source,
                                     correct=correct, score=score))
        if rng.random() < spec.orphan_fraction:
            stream.append(Feedback(event_id=f"f{seed}-orphan-{i}", interaction_id=f"nope-{i}", ts=ts,
                                   service=rng.choice(SERVICES), feedback_type="thumbs_down"))
    # Assign partitions by key and offsets in send order.
    next_offset = [0] * spec.partitions
    out = []
    for ev in stream:
        p = partition_of(ev.interaction_id, spec.partitions)
        out.append((p, next_offset[p], ev))
        next_offset[p] += 1
    return out

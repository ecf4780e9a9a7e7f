"""Seeded events for the Grafana tests, aggregated by the worker's own WindowAggregator.

    events = generate(rng, "svc", start, end, rate=lambda t: 3.0, knobs=lambda t, variant: Knobs())
    store(client, db, events, lag_s=0.5)          # raw tables + window rows (+ rollups via the views)

Every figure a panel or a rule should show can be recomputed from ``events`` in Python.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from aipulse.contract import Evaluation, Feedback, Interaction, SdkStats
from aipulse_stream.config import Settings
from aipulse_stream.sinks.raw_events import column_names, rows_by_table
from aipulse_stream.transforms.join import JoinedKey, ts_ms
from aipulse_stream.transforms.windows import WindowAggregator

TOPIC = "aipulse.events"


@dataclass(frozen=True)
class Knobs:
    latency_median_ms: float = 300.0
    error_p: float = 0.0005
    fallback_p: float = 0.01
    escalate_p: float = 0.005
    cost_usd: float = 0.00026
    feedback_p: float = 0.2
    up_p: float = 0.85
    eval_p: float = 0.1
    correct_p: float = 0.92
    shadow_p: float = 0.1
    disagree_p: float = 0.05
    whale_cost: float = 0.0  # cost of the calls of user "whale" (0 = no whale)
    unpriced_p: float = 0.0  # share of calls with tokens but no cost (a model without a price)


HEALTHY = Knobs()


def generate(rng: random.Random, service: str, start: datetime, end: datetime, rate, knobs,
             features=("chat",), models=("m1",), variants=("control", "candidate"), users=50, prefix=""):
    """Interactions as a Poisson-ish stream with rate(t) per second; feedback/evals after them."""
    out = []
    t = start.timestamp()
    end_s = end.timestamp()
    n = 0
    while True:
        t += rng.expovariate(rate(t))
        if t >= end_s:
            break
        n += 1
        ts = datetime.fromtimestamp(round(t, 3), timezone.utc)
        variant = rng.choice(variants)
        k = knobs(t, variant)
        whale = k.whale_cost > 0 and n % 10 == 0
        r = rng.random()
        outcome = "error" if r < k.error_p else "escalated" if r < k.error_p + k.escalate_p else "ok"
        fb = rng.random() < k.fallback_p
        iid = f"{prefix}{service}-{n}"
        unpriced = k.unpriced_p > 0 and rng.random() < k.unpriced_p  # no draw otherwise: same streams
        out.append(Interaction(
            event_id=iid, ts=ts, service=service, feature=rng.choice(features), model=rng.choice(models),
            variant=variant, prompt_version=rng.choice(["p1", "p2"]), rollout_stage=10.0 if variant == "candidate" else None,
            user_id="whale" if whale else f"u{rng.randrange(users)}",
            latency_ms=k.latency_median_ms * math.exp(rng.gauss(0, 0.4)), ttft_ms=100 * math.exp(rng.gauss(0, 0.3)),
            input_tokens=rng.randrange(100, 1000), output_tokens=rng.randrange(10, 300),
            cost_usd=None if unpriced else k.whale_cost if whale else k.cost_usd, outcome="fallback" if fb and outcome == "ok" else outcome,
            fallback_depth=rng.choice([1, 1, 2]) if fb else 0, confidence=rng.random()))
        later = ts + timedelta(milliseconds=300)
        if rng.random() < k.feedback_p:
            out.append(Feedback(event_id=f"{iid}-f", interaction_id=iid, ts=later, service=service,
                                feedback_type="thumbs_up" if rng.random() < k.up_p else "thumbs_down"))
        if rng.random() < k.eval_p:
            out.append(Evaluation(event_id=f"{iid}-e", interaction_id=iid, ts=later, service=service,
                                  correct=rng.random() < k.correct_p))
        if rng.random() < k.shadow_p:
            out.append(Evaluation(event_id=f"{iid}-s", interaction_id=iid, ts=later, service=service,
                                  source="shadow", correct=rng.random() >= k.disagree_p))
    return out


def store(client, db: str, events, lag_s: float = 0.5) -> None:
    """Insert raw rows (ingested lag_s after their ts) and the aggregator's window rows
    (written lag_s after their newest event: ``written_at``, what pipeline_lag_s reads)."""
    settings = Settings(database=db)
    events = sorted(events, key=lambda e: (e.ts, e.kind != "interaction"))
    agg = WindowAggregator(settings, TOPIC)
    agg.set_start(0, 0, None)
    keys = {}
    triples = []
    for offset, e in enumerate(events):
        joined = None
        if isinstance(e, Interaction):
            keys[e.interaction_id] = JoinedKey(e.service, e.feature, e.model, e.variant, ts_ms(e.ts))
        else:
            joined = keys.get(e.interaction_id)
        agg.add(0, offset, e, joined)
        triples.append((0, offset, e))
    rows = [{**r, "written_at": r["max_ts"] + timedelta(seconds=lag_s)} for r in agg.drain_rows()]
    cols = list(rows[0])
    client.insert(f"{db}.metrics_window", [[r[c] for c in cols] for r in rows], column_names=cols)  # one insert
    spend = agg.spend.drain_rows(TOPIC, settings.window_s)  # top spenders, as the worker writes them
    if spend:
        cols = list(spend[0])
        client.insert(f"{db}.spend_top_window", [[r[c] for c in cols] for r in spend], column_names=cols)
    # The SDK's delivery ledger of each service (the Pipeline board's ledger table): two
    # instances, one of which lost events while Kafka was away.
    services = sorted({e.service for e in events})
    for i, service in enumerate(services):
        for n, (inst, dropped) in enumerate(((f"{service}-a", {}), (f"{service}-b", {"kafka_unavailable": 7}))):
            emitted = 100 + n
            triples.append((0, len(events) + 2 * i + n, SdkStats(
                event_id=f"ledger-{service}-{n}", ts=events[len(events) // 2].ts, service=service, instance_id=inst,
                emitted=emitted, sent=emitted - sum(dropped.values()), queued=0, dropped=dropped)))
    for table, trows in rows_by_table(triples, "aipulse.events").items():
        names = column_names(table)
        ts_i = names.index("ts")
        client.insert(f"{db}.{table}", [list(r) + [r[ts_i] + timedelta(seconds=lag_s)] for r in trows],
                      column_names=names + ["ingested_at"])


def interactions(events, **where):
    return [e for e in events if isinstance(e, Interaction) and not e.shadow
            and all(getattr(e, k) in (v if isinstance(v, (list, tuple, set)) else [v]) for k, v in where.items())]


def exact_quantile(values, q):
    v = sorted(values)
    return v[math.floor(q * (len(v) - 1))] if v else math.nan


__all__ = ["Knobs", "HEALTHY", "generate", "store", "interactions", "exact_quantile", "replace"]

"""Flat synthetic interactions from the trace, for the benchmarks (bench/common.py,
bench/freshness.py): one dict of contract fields per trace request, no application around it.
The demo itself runs :mod:`.app` on the SDK instead."""
from __future__ import annotations

import random

from . import trace
from .trace import ATTRIBUTION as TRACE_ATTRIBUTION

# Synthetic model line-up per trace service: (model, share, ms per output token, error rate).
MODELS = {
    "chat": [("gpt-4o", 0.6, 18.0, 0.01), ("gpt-4o-mini", 0.4, 9.0, 0.006)],
    "code": [("claude-sonnet-4-5", 0.7, 14.0, 0.008), ("claude-haiku-4-5", 0.3, 7.0, 0.005)],
}
CANARY_SHARE = 0.1  # 10 % of chat traffic on a canary prompt version


def load_trace(limit_per_file: int | None = None) -> list[tuple[float, str, int, int]]:
    """(offset seconds from the trace start, feature, input tokens, output tokens), by arrival;
    conv rows are feature "chat", code rows "code"."""
    per: dict[str, int] = {}
    out = []
    for r in trace.load_trace().requests:
        per[r.source] = per.get(r.source, 0) + 1
        if limit_per_file is None or per[r.source] <= limit_per_file:
            out.append((r.offset_s, "chat" if r.source == "conv" else "code", r.input_tokens, r.output_tokens))
    t0 = out[0][0]
    return [(t - t0, f, i, o) for t, f, i, o in out]


def synthesize(rng: random.Random, feature: str, tin: int, tout: int) -> dict:
    models = MODELS[feature]
    r = rng.random()
    acc = 0.0
    for model, share, ms_per_token, err_rate in models:
        acc += share
        if r <= acc:
            break
    ttft = 80 + tin * 0.02 * rng.lognormvariate(0, 0.3)
    latency = ttft + tout * ms_per_token * rng.lognormvariate(0, 0.25)
    outcome, depth = "ok", 0
    x = rng.random()
    if x < err_rate:
        outcome = "error"
    elif x < err_rate + 0.02:
        outcome, depth = "fallback", 1
    elif x < err_rate + 0.03:
        outcome = "escalated"
    variant = "canary" if feature == "chat" and rng.random() < CANARY_SHARE else "baseline"
    return dict(feature=feature, model=model, provider="openai" if model.startswith("gpt") else "anthropic",
                variant=variant, prompt_version="v2" if variant == "canary" else "v1",
                latency_ms=round(latency, 2), ttft_ms=round(ttft, 2), input_tokens=tin, output_tokens=tout,
                outcome=outcome, fallback_depth=depth, confidence=round(rng.betavariate(8, 2), 3),
                user_id=f"user-{rng.randint(1, 400)}")

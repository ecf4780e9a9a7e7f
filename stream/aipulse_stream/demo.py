"""`aipulse demo`: the local stack up, real-trace traffic through the SDK, a summary from ClickHouse.

Traffic follows a real LLM request trace (../shared/data/azure-llm-trace-2023: arrival times
and token counts of Azure's production LLM services, CC-BY 4.0, Patel et al., "Splitwise:
Efficient generative LLM inference using phase splitting", ISCA 2024). The trace has no
latency, no model and no outcome: those are synthesized here (clearly labelled), latency from
the token counts (time to first token grows with the prompt, then a per-token decode time,
with lognormal noise), so the figures read back are the pipeline's, not the trace's.
"""
from __future__ import annotations

import csv
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .config import Settings

TRACE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "azure-llm-trace-2023"
TRACE_ATTRIBUTION = ("Azure LLM inference trace 2023 (CC-BY 4.0), Patel et al., \"Splitwise: Efficient generative "
                     "LLM inference using phase splitting\", ISCA 2024")
# Synthetic model line-up per trace service: (model, share, ms per output token, error rate).
MODELS = {
    "chat": [("gpt-4o", 0.6, 18.0, 0.01), ("gpt-4o-mini", 0.4, 9.0, 0.006)],
    "code": [("claude-sonnet-4-5", 0.7, 14.0, 0.008), ("claude-haiku-4-5", 0.3, 7.0, 0.005)],
}
CANARY_SHARE = 0.1  # 10 % of chat traffic on a canary prompt version


def load_trace(limit_per_file: int | None = None) -> list[tuple[float, str, int, int]]:
    """(offset seconds from the trace start, feature, input tokens, output tokens), by arrival."""
    out = []
    for feature, name in (("chat", "conv.csv"), ("code", "code.csv")):
        path = TRACE_DIR / name
        if not path.exists():
            raise FileNotFoundError(f"the demo trace {path} is missing (it ships in ../shared/data)")
        with open(path, newline="") as f:
            for i, row in enumerate(csv.DictReader(f)):
                if limit_per_file is not None and i >= limit_per_file:
                    break
                ts = datetime.fromisoformat(row["TIMESTAMP"][:26]).replace(tzinfo=timezone.utc).timestamp()
                out.append((ts, feature, int(row["ContextTokens"]), int(row["GeneratedTokens"])))
    out.sort()
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


def run_demo(settings: Settings, seconds: float = 60.0, rate: float = 150.0, out=sys.stdout) -> int:
    import aipulse
    from aipulse_local.stack import clickhouse_url, kafka_bootstrap, up

    from .readside.metrics_cli import render_table
    from .readside.query import metrics_query
    from .storage.clickhouse import client_for_url

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    say("aipulse demo: starting the local stack (Kafka, ClickHouse engine, worker)...")
    up(settings, progress=lambda m: say("  " + m))
    trace = load_trace()
    span = trace[-1][0]
    # Replay the trace's arrival pattern, compressed so that `seconds` hold ~rate*seconds events.
    n_target = int(rate * seconds)
    step = max(1, len(trace) // max(1, n_target))
    picked = trace[::step][:n_target]
    speed = (picked[-1][0] or 1.0) / seconds
    say(f"traffic: {len(picked)} calls from the real trace ({TRACE_ATTRIBUTION}); "
        f"{span / 60:.0f} trace minutes replayed in {seconds:.0f}s; latency, model and outcome synthesized")

    service = "demo"
    aipulse.init(kafka_bootstrap=kafka_bootstrap(settings), service=service, user_salt="demo-salt")
    rng = random.Random(2023)
    started = time.time()
    start_wall = time.monotonic()
    next_report = 5.0
    ids = []
    for offset, feature, tin, tout in picked:
        due = offset / speed
        now = time.monotonic() - start_wall
        if due > now:
            time.sleep(due - now)
        fields = synthesize(rng, feature, tin, tout)
        iid = aipulse.record(ts=time.time(), **fields)
        ids.append(iid)
        if rng.random() < 0.15:
            aipulse.feedback(iid, "thumbs_up" if rng.random() < 0.85 else "thumbs_down")
        if rng.random() < 0.05:
            aipulse.evaluate(iid, correct=rng.random() < 0.9, source="ground_truth")
        elapsed = time.monotonic() - start_wall
        if elapsed >= next_report:
            st = aipulse.stats()
            say(f"  {elapsed:5.0f}s  emitted {st['emitted']:>6}  sent {st['sent']:>6}  queued {st['queued']:>5}")
            next_report += 5.0
    aipulse.flush(30)
    st = aipulse.stats()
    aipulse.close()
    say(f"sent {st['sent']} events ({sum(st['dropped'].values())} dropped); "
        "waiting for the worker to store them...")

    client = client_for_url(clickhouse_url(settings))
    end = time.time() + 1
    deadline = time.monotonic() + 120
    want = len(ids)
    rows = []
    while time.monotonic() < deadline:
        rows = metrics_query(client, settings, ["feature", "model"], started - 3600, end + 3600,
                             where={"service": [service]})
        got = sum(r["requests"] + r.get("late", 0) for r in rows)
        if got >= want:
            break
        time.sleep(1)
    raw = client.query("SELECT count() FROM aipulse.interactions FINAL WHERE service = 'demo' AND ts >= %(t)s",
                       {"t": datetime.fromtimestamp(started - 1, tz=timezone.utc)}).result_rows[0][0]
    say("")
    say(f"summary from ClickHouse (window rows; {raw} raw interactions stored of {want} sent):")
    say(render_table(rows, ["feature", "model"]))
    try:
        from .readside.chart import write_latency_chart

        png = write_latency_chart(client, settings, service, started - 30, time.time(),
                                  settings.state_dir / "demo-latency.png")
        if png:
            say(f"chart: {png} (P50/P95/P99 and error rate per window and feature)")
    except ImportError:
        say("chart skipped: matplotlib is not installed")
    say("")
    say("try: aipulse metrics --group-by feature,variant --from -15m --where service=demo")
    say("the stack keeps running; stop it with: aipulse down")
    return 0 if raw == want else 1

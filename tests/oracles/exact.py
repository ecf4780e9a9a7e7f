"""The exact reference: the same figures as ``metrics_query``, computed from raw events.

For tests (unit and integration) that must prove the stored window rows right::

    >>> want = exact_metrics(records, settings, ["feature"], start, end)   # doctest: +SKIP
    >>> got = metrics_query(client, settings, ["feature"], start, end)     # doctest: +SKIP
    >>> assert_metrics_match(got, want)                                    # doctest: +SKIP

It is written independently of transforms/windows.py (no shared code but the dimension
list, rank rule and ``ts_ms``), on purpose: a bug in the aggregator must not be copied here.

``records`` are ``(partition, offset, event)`` triples (as consumed from Kafka, or read
back from the raw tables' ``_partition``/``_offset``) or bare events. With bare events the
list order stands for the offset order of one partition; that is right for the join (an
interaction and its feedback share a partition and keep their relative order) and for
lateness only if the events went through a single partition, so generators that feed
several partitions should either emit no late events (ts within ``allowed_lateness_s`` of
each partition's maximum) or pass triples.

Quantiles are the exact lower quantiles of the raw values (sketch.rank_index); the stored
ones must be within ``sketch.ALPHA`` (1%) of them, which :func:`assert_metrics_match` checks.
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from aipulse.contract import Evaluation, Feedback, Interaction

from aipulse_stream.config import Settings
from aipulse_stream.readside.query import ALL_FIGURES, DIMENSIONS, QUANTILES, SUM_FIGURES, derive
from aipulse_stream.transforms.join import ts_ms
from aipulse_catalog.sketch import ALPHA, MIN_VALUE_MS, exact_quantile

QUANTILE_FIGURES = tuple(f"latency_{n}_ms" for n in QUANTILES) + ("ttft_p50_ms", "ttft_p95_ms")
FEEDBACK = {"thumbs_up": "feedback_up", "thumbs_down": "feedback_down",
            "task_completed": "task_completed", "task_failed": "task_failed",
            "human_correction": "corrections", "escalation_resolved": "escalations_resolved"}
COST_TOLERANCE_USD = 1e-6  # far inside "to the cent"; only float summation order differs
FLOAT_REL_TOLERANCE = 1e-9  # float sums in another order


def _triples(records) -> list[tuple[int, int, object]]:
    out = []
    for i, r in enumerate(records):
        out.append(tuple(r) if isinstance(r, (tuple, list)) else (0, i, r))
    return out


def _ms(t) -> int | None:
    if t is None:
        return None
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(float(t), timezone.utc)
    return ts_ms(t if t.tzinfo else t.replace(tzinfo=timezone.utc))


def exact_metrics(records: Iterable, settings: Settings, group_by: Sequence[str] = (),
                  start=None, end=None, where: Mapping[str, Sequence[str] | str] | None = None
                  ) -> dict[tuple, dict]:
    """{group tuple (values of group_by, in order): figures dict (same names as metrics_query)}."""
    window_ms = settings.window_s * 1000
    lateness_ms = settings.allowed_lateness_s * 1000
    horizon_ms = settings.join_horizon_s * 1000
    lo, hi = _ms(start), _ms(end)
    where = {d: ({v} if isinstance(v, str) else set(v)) for d, v in (where or {}).items()}
    triples = sorted(_triples(records), key=lambda r: (r[0], r[1]))

    # Which events count: watermark per partition in offset order.
    watermark: dict[int, int] = {}
    first_interaction: dict[tuple[int, str], tuple[int, Interaction]] = {}
    sums: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))  # ints stay exact past 2**53
    latencies: dict[tuple, list] = defaultdict(list)
    ttfts: dict[tuple, list] = defaultdict(list)
    users: dict[tuple, set] = defaultdict(set)

    seen_in_block: set[tuple[int, int, str]] = set()
    for partition, offset, ev in triples:
        ident = (partition, offset // settings.offset_block, ev.event_id)
        if ident in seen_in_block:  # a re-sent duplicate within one offset block: not counted
            continue
        seen_in_block.add(ident)
        t = ts_ms(ev.ts)
        wm = watermark.get(partition)
        late = wm is not None and t < wm - lateness_ms
        watermark[partition] = t if wm is None else max(wm, t)
        if isinstance(ev, Interaction):
            first_interaction.setdefault((partition, ev.interaction_id), (offset, ev))
            dims = {"service": ev.service, "feature": ev.feature, "model": ev.model, "variant": ev.variant}
            joined = True
        else:
            hit = first_interaction.get((partition, ev.interaction_id))
            joined = hit is not None and hit[0] < offset and t - ts_ms(hit[1].ts) <= horizon_ms
            src = hit[1] if joined else None
            dims = ({"service": src.service, "feature": src.feature, "model": src.model, "variant": src.variant}
                    if joined else {"service": ev.service, "feature": "", "model": "", "variant": ""})
        window = t - t % window_ms
        if (lo is not None and window < _ceil_s(lo)) or (hi is not None and window >= _ceil_s(hi)):
            continue
        if any(dims[d] not in vals for d, vals in where.items()):
            continue
        g = tuple(dims[d] for d in group_by)
        s = sums[g]
        if late:
            s["late"] += 1
        elif isinstance(ev, Interaction):
            if ev.shadow:
                s["shadow_requests"] += 1
                continue
            s["requests"] += 1
            o = ev.outcome
            s["errors"] += o in ("error", "timeout")
            s["timeouts"] += o == "timeout"
            s["escalations"] += o == "escalated"
            s["refused"] += o == "refused"
            s["rejected_input"] += o == "rejected_input"
            s["rejected_output"] += o == "rejected_output"
            s["fallbacks"] += ev.fallback_depth > 0 or o == "fallback"
            s["low_confidence"] += ev.confidence is not None and ev.confidence < settings.low_confidence_threshold
            s["cached"] += ev.cached
            s["input_tokens"] += ev.input_tokens
            s["output_tokens"] += ev.output_tokens
            if ev.cost_usd is None:
                s["cost_missing"] += 1
                s["unpriced_requests"] += (ev.input_tokens + ev.output_tokens) > 0
            else:
                s["cost_usd"] += ev.cost_usd
            s["latency_sum_ms"] += ev.latency_ms
            latencies[g].append(ev.latency_ms)
            if ev.ttft_ms is not None:
                s["ttft_count"] += 1
                s["ttft_sum_ms"] += ev.ttft_ms
                ttfts[g].append(ev.ttft_ms)
            if ev.user_id:
                users[g].add(ev.user_id)
        elif not joined:
            s["orphaned"] += 1
        elif isinstance(ev, Feedback):
            if ev.feedback_type in FEEDBACK:
                s[FEEDBACK[ev.feedback_type]] += 1
        elif isinstance(ev, Evaluation):
            if ev.source == "shadow":
                s["shadow_pairs"] += 1
                s["shadow_disagreements"] += ev.correct is False
            else:
                if ev.correct is not None:
                    s["evaluated"] += 1
                    s["correct"] += bool(ev.correct)
                if ev.score is not None:
                    s["eval_scored"] += 1
                    s["eval_score_sum"] += ev.score

    out = {}
    for g, s in sums.items():
        row = {name: s.get(name, 0) for name in SUM_FIGURES}
        for name in SUM_FIGURES:
            if name not in ("cost_usd", "latency_sum_ms", "ttft_sum_ms", "eval_score_sum"):
                row[name] = int(row[name])
        lat = sorted(latencies[g])
        tt = sorted(ttfts[g])
        for n, q in QUANTILES.items():
            row[f"latency_{n}_ms"] = exact_quantile(lat, q)
        row["ttft_p50_ms"] = exact_quantile(tt, 0.5)
        row["ttft_p95_ms"] = exact_quantile(tt, 0.95)
        row["users"] = len(users[g])
        full = derive(row)
        out[g] = {**dict(zip(group_by, g)), **{f: full[f] for f in ALL_FIGURES}}
    return out


def _ceil_s(ms: int) -> int:
    """Range bounds act on whole-second window starts, as in the SQL (query.metrics_sql)."""
    return -(-ms // 1000) * 1000


def compare(got: Sequence[dict], want: Mapping[tuple, dict], group_by: Sequence[str]) -> list[str]:
    """Differences between metrics_query output and exact_metrics: [] when they agree.

    Counts must be equal; cost within COST_TOLERANCE_USD; other float sums and rates to 1e-9 relative;
    quantiles within ALPHA (1%) relative, or both below the sketch's minimum value.
    """
    problems = []
    got_by = {tuple(r[d] for d in group_by): r for r in got}
    for g in sorted(set(got_by) | set(want), key=str):
        if g not in got_by or g not in want:
            problems.append(f"group {g}: {'missing from query' if g not in got_by else 'not expected'}")
            continue
        a, b = got_by[g], want[g]
        for f in ALL_FIGURES:
            x, y = a.get(f), b.get(f)
            if f in QUANTILE_FIGURES:
                if x is None or y is None:
                    ok = x is None and y is None
                elif y < MIN_VALUE_MS:
                    ok = x == 0.0
                else:
                    ok = abs(x - y) <= ALPHA * y * (1 + 1e-9)
            elif f == "cost_usd":
                ok = abs(x - y) <= COST_TOLERANCE_USD
            elif isinstance(y, float) or isinstance(x, float):
                ok = (x is None and y is None) or (
                    x is not None and y is not None and math.isclose(x, y, rel_tol=FLOAT_REL_TOLERANCE, abs_tol=1e-9))
            else:
                ok = x == y
            if not ok:
                problems.append(f"group {g}: {f} query={x!r} exact={y!r}")
    return problems


def assert_metrics_match(got: Sequence[dict], want: Mapping[tuple, dict], group_by: Sequence[str]) -> None:
    problems = compare(got, want, group_by)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])


__all__ = ["exact_metrics", "compare", "assert_metrics_match", "DIMENSIONS"]

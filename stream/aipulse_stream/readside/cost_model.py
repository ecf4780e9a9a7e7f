"""``aipulse cost-model``: what a request volume would cost, from the observed costs.

    aipulse cost-model --volume 10000/day
    aipulse cost-model --volume 500/hour --feature support-chat --ceiling 2000 --json

For the requests of [--from, --to) (default the last 7 days) in scope (``--feature``,
``--where``): the mean cost per request comes from the window rows, the same sums
``aipulse metrics`` prints (cost_usd / requests); the spread and the P95 cost per request come
from the raw ``interactions`` (shadow calls excluded: they are not user traffic). At ``V``
requests a day, each (feature, model) keeps its observed share of the requests, so

    daily = V x observed cost / observed requests        monthly = 30 x daily

and at the observed volume (observed requests / observed days) the projection is the observed
daily cost (tests/report/test_cost_model.py). The interval is 95 % by the normal approximation:
the uncertainty of the mean (from the observed count) plus the spread of a sum of V costs
(:func:`aipulse_stream.readside.stats.total_interval`). The ceiling is ``--ceiling`` or the
threshold of the ``cost_run_rate_ceiling`` alert rule (alerts/aipulse_alerts/rules.yaml, passed in by the command), USD per month.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from datetime import datetime


from ..config import Settings
from ..storage.clickhouse import connect
from .cli_args import add_time_range, add_where, guarded, parse_where, time_range
from .query import metrics_query
from .stats import total_interval

DAYS_PER_MONTH = 30
ALL = ("*", "*")  # the key of the whole scope in cost_distribution
CEILING_RULE = "cost_run_rate_ceiling"
DEFAULT_FROM = "-7d"
PER_DAY = {"s": 86400, "sec": 86400, "second": 86400, "m": 1440, "min": 1440, "minute": 1440,
           "h": 24, "hour": 24, "d": 1, "day": 1, "w": 1 / 7, "week": 1 / 7, "month": 1 / DAYS_PER_MONTH}
_VOLUME = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*(?:/\s*([a-z]+?)s?)?\s*$")


class CostModelError(ValueError):
    """A bad volume, range or ceiling; the message says what to write."""


def parse_volume(text: str) -> float:
    """Requests per day from ``10000/day``, ``500/hour``, ``12/s``, ``300000/month`` (bare = per day).

        >>> parse_volume("10000/day"), parse_volume("500/hour"), parse_volume("1,000")
        (10000.0, 12000.0, 1000.0)
    """
    m = _VOLUME.match(text.lower())
    if not m or (m.group(2) and m.group(2) not in PER_DAY):
        raise CostModelError(f"--volume {text!r}: write N/day, N/hour, N/minute, N/s, N/week or N/month")
    return float(m.group(1).replace(",", "").replace("_", "")) * PER_DAY[m.group(2) or "day"]


def cost_distribution(client, settings: Settings, start: datetime, end: datetime, where: dict) -> dict:
    """(feature, model) -> {n, sum, sum_sq, p95} of the raw per-request costs; ALL -> the whole scope."""
    cond = ["ts >= toDateTime64({a:Float64}, 3, 'UTC')", "ts < toDateTime64({b:Float64}, 3, 'UTC')",
            "NOT shadow", "cost_usd IS NOT NULL"]
    params: dict = {"a": start.timestamp(), "b": end.timestamp()}
    for dim, values in where.items():
        cond.append(f"{dim} IN {{w_{dim}:Array(String)}}")
        params[f"w_{dim}"] = list(values)
    base = (f"count(), sum(cost_usd), sum(cost_usd * cost_usd), quantileExact(0.95)(cost_usd) "
            f"FROM {settings.database}.interactions FINAL WHERE {' AND '.join(cond)}")
    out = {}
    for feature, model, n, s, s2, p95 in client.query(
            f"SELECT feature, model, {base} GROUP BY feature, model", parameters=params).result_rows:
        out[(feature, model)] = {"n": n, "sum": s, "sum_sq": s2, "p95": p95}
    n, s, s2, p95 = client.query(f"SELECT {base}", parameters=params).result_rows[0]
    out[ALL] = {"n": n, "sum": s, "sum_sq": s2, "p95": p95} if n else None
    return out


def _sd(d: dict | None) -> float:
    if not d or d["n"] < 2:
        return 0.0
    mean = d["sum"] / d["n"]
    return math.sqrt(max(0.0, (d["sum_sq"] - d["n"] * mean * mean) / (d["n"] - 1)))


def project(client, settings: Settings, start: datetime, end: datetime, volume_per_day: float,
            where: dict | None = None, ceiling: float | None = None) -> dict:
    """The projection as plain data (what ``--json`` prints)."""
    where = where or {}
    days = (end - start).total_seconds() / 86400
    rows = metrics_query(client, settings, ["feature", "model"], start, end, where)
    n = sum(r["requests"] for r in rows)
    if not n:
        raise CostModelError(f"no requests between {start.isoformat()} and {end.isoformat()} in this scope: "
                             "widen --from/--to or drop --feature/--where")
    cost = sum(r["cost_usd"] for r in rows)
    dist = cost_distribution(client, settings, start, end, where)
    whole = dist.get(ALL)
    sd = _sd(whole)
    mean = cost / n
    lo, hi = total_interval(volume_per_day, mean, sd, whole["n"] if whole else n)
    mlo, mhi = total_interval(DAYS_PER_MONTH * volume_per_day, mean, sd, whole["n"] if whole else n)
    daily = volume_per_day * mean
    models = []
    for r in rows:
        if not r["requests"]:  # a shadow candidate's row: no user traffic to project
            continue
        d = dist.get((r["feature"], r["model"]))
        share = r["requests"] / n
        models.append({
            "feature": r["feature"], "model": r["model"], "observed_requests": r["requests"],
            "observed_cost_usd": r["cost_usd"], "request_share": share,
            "cost_share": r["cost_usd"] / cost if cost else None,
            "cost_per_request_usd": r["cost_usd"] / r["requests"],
            "p95_cost_per_request_usd": d["p95"] if d else None,
            "projected_daily_usd": volume_per_day * share * r["cost_usd"] / r["requests"],
        })
    out = {
        "from": start.isoformat(), "to": end.isoformat(), "where": where, "observed_days": days,
        "observed_requests": n, "observed_cost_usd": cost, "observed_volume_per_day": n / days,
        "observed_daily_cost_usd": cost / days, "cost_missing": sum(r["cost_missing"] for r in rows),
        "volume_per_day": volume_per_day, "cost_per_request_usd": mean,
        "cost_per_request_sd_usd": sd, "p95_cost_per_request_usd": whole["p95"] if whole else None,
        "projected_daily_usd": daily, "projected_daily_interval_usd": [lo, hi],
        "projected_monthly_usd": DAYS_PER_MONTH * daily, "projected_monthly_interval_usd": [mlo, mhi],
        "models": models, "monthly_ceiling_usd": ceiling,
    }
    if ceiling is not None:
        out["ceiling_share"] = out["projected_monthly_usd"] / ceiling if ceiling else None
        out["over_ceiling"] = out["projected_monthly_usd"] > ceiling
        out["max_volume_per_day_under_ceiling"] = ceiling / DAYS_PER_MONTH / mean if mean else None
    return out


def render_text(p: dict) -> str:
    usd = lambda v: "-" if v is None else (f"${v:,.2f}" if abs(v) >= 1 else f"${v:.6f}")  # noqa: E731
    lines = [
        f"observed {p['from'][:19]} .. {p['to'][:19]} UTC ({p['observed_days']:.3g} days): "
        f"{p['observed_requests']:,} requests, {usd(p['observed_cost_usd'])} "
        f"({p['observed_volume_per_day']:,.0f}/day, {usd(p['observed_daily_cost_usd'])}/day)",
        f"cost per request: mean {usd(p['cost_per_request_usd'])}, P95 {usd(p['p95_cost_per_request_usd'])}",
        f"at {p['volume_per_day']:,.0f} requests/day:",
        f"  daily    {usd(p['projected_daily_usd'])}  (95%: {usd(p['projected_daily_interval_usd'][0])} .. "
        f"{usd(p['projected_daily_interval_usd'][1])})",
        f"  monthly  {usd(p['projected_monthly_usd'])}  (95%: {usd(p['projected_monthly_interval_usd'][0])} .. "
        f"{usd(p['projected_monthly_interval_usd'][1])}; {DAYS_PER_MONTH} days)",
    ]
    if p.get("monthly_ceiling_usd") is not None:
        verdict = "OVER" if p["over_ceiling"] else "under"
        lines.append(f"  ceiling  {usd(p['monthly_ceiling_usd'])}/month: {verdict} "
                     f"({100 * p['ceiling_share']:.1f}% of it); the ceiling allows "
                     f"{p['max_volume_per_day_under_ceiling']:,.0f} requests/day at this mix")
    lines.append("")
    head = f"{'feature':<16}{'model':<20}{'req share':>10}{'cost share':>11}{'$/request':>12}{'P95 $/req':>12}{'$/day':>12}"
    lines += [head, "-" * len(head)]
    for m in p["models"]:
        lines.append(f"{m['feature'][:15]:<16}{(m['model'] or '(no model)')[:19]:<20}{100 * m['request_share']:>9.1f}%"
                     f"{'-' if m['cost_share'] is None else format(100 * m['cost_share'], '.1f') + '%':>11}"
                     f"{usd(m['cost_per_request_usd']):>12}{usd(m['p95_cost_per_request_usd']):>12}"
                     f"{usd(m['projected_daily_usd']):>12}")
    if p["cost_missing"]:
        lines.append(f"note: {p['cost_missing']} requests had no cost (unknown price); they count as $0")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--volume", required=True, metavar="N/UNIT",
                        help="requests to project: 10000/day, 500/hour, 12/s, 300000/month")
    parser.add_argument("--feature", action="append", default=[], metavar="F", help="only this feature; repeat")
    add_where(parser, "service, feature, model or variant")
    parser.add_argument("--ceiling", type=float, default=None, metavar="USD",
                        help=f"monthly ceiling (default: the {CEILING_RULE} rule's threshold)")
    add_time_range(parser, DEFAULT_FROM, from_help=f"observed range start (default {DEFAULT_FROM})")
    parser.add_argument("--json", action="store_true", help="print the projection as JSON")


def run(args: argparse.Namespace, settings: Settings | None = None, client=None, out=None,
        default_ceiling: float | None = None) -> int:
    """Print the projection; 0 on success, 2 on a usage error, 1 when ClickHouse fails.

    ``default_ceiling``: the monthly USD ceiling used without ``--ceiling`` (the command passes
    the ``cost_run_rate_ceiling`` rule's threshold: the rule file lives a floor above)."""
    settings = settings or Settings.from_env()
    out = out or sys.stdout

    def read():
        volume = parse_volume(args.volume)
        if args.ceiling is not None and args.ceiling < 0:
            raise CostModelError(f"--ceiling {args.ceiling} must be a positive amount of USD per month")
        start, end = time_range(args)
        where = parse_where(args.where)
        if args.feature:
            where.setdefault("feature", []).extend(args.feature)
        ceiling = args.ceiling if args.ceiling is not None else default_ceiling
        return project(client or connect(settings), settings, start, end, volume, where, ceiling)

    code, p = guarded("cost-model", read, usage_errors=(CostModelError,))
    if code:
        return code
    if args.json:
        json.dump(p, out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        print(render_text(p), file=out)
    return 0


__all__ = ["add_arguments", "run", "project", "parse_volume", "render_text"]

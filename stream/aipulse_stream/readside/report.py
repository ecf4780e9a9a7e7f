"""``aipulse report``: the monthly review as one self-contained HTML file.

    aipulse report --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z --out review.html
    aipulse report --from -30d --to now --out review.html --where service=support

What it holds, for the range [--from, --to):

- accuracy, cost per request and satisfaction trends by feature and model; fallback and
  escalation trends (PNG charts embedded as base64; every point is a rate, so the last,
  partial bucket is never drawn as a drop);
- each rollout's arms side by side (requests, error and fallback rates with 95 % Wilson
  intervals, P95, satisfaction, accuracy, cost per request) and the canary alerts of the range;
- the worst edge cases: interactions with thumbs-down, corrections, fallbacks or errors,
  grouped by feature, with their prompt and response only where text capture was enabled;
- the alerts of the range, from the ``alerts`` table the streaming detector writes.

Every figure comes from :func:`aipulse_stream.readside.query.metrics_query`, the read that
``aipulse metrics`` prints (tests/report/test_report.py holds the report to equal it); the
edge cases and alerts come from the raw ``interactions``/``feedback`` and ``alerts`` tables.
The figures are also embedded as JSON (``<script id="aipulse-report-data">``) for tools.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from ..config import Settings
from ..storage.clickhouse import connect
from .cli_args import add_time_range, add_where, guarded, parse_where, time_range
from .query import metrics_query
from .stats import wilson

MAX_BUCKETS = 30                 # points per trend line at most
BUCKET_STEPS_S = (60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
EDGE_CASES_PER_FEATURE = 8
TEXT_CHARS = 400                 # prompt/response shown at most this long (already truncated by the SDK)
CANARY_RULE_PREFIX = "canary_"
CONTROL_ARMS = ("", "control", "baseline")
# (figure, title, axis label, as percent) of the trend charts, one PNG each.
TRENDS = (
    ("accuracy", "Accuracy (correct / evaluated)", "%", True),
    ("cost_per_request", "Cost per request", "USD", False),
    ("satisfaction", "Satisfaction (thumbs up / (up + down))", "%", True),
    ("fallback_rate", "Fallback rate", "%", True),
    ("escalation_rate", "Escalation rate", "%", True),
)


class ReportError(ValueError):
    """A bad range or output path; the message says what to fix."""


# ------------------------------------------------------------------ data

def trend_buckets(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into at most MAX_BUCKETS equal steps (the last one may be partial)."""
    span = (end - start).total_seconds()
    step = next((s for s in BUCKET_STEPS_S if span / s <= MAX_BUCKETS), None)
    if step is None:
        step = math.ceil(span / MAX_BUCKETS)
    out, a = [], start
    while a < end:
        b = min(end, a + timedelta(seconds=step))
        out.append((a, b))
        a = b
    return out


def with_cost_per_request(row: dict) -> dict:
    row = dict(row)
    row["cost_per_request"] = row["cost_usd"] / row["requests"] if row["requests"] else None
    return row


def with_intervals(row: dict) -> dict:
    """Adds 95 % Wilson intervals of the error and fallback rates (``*_ci``: [low, high])."""
    row = with_cost_per_request(row)
    row["error_rate_ci"] = list(wilson(row["errors"], row["requests"]))
    row["fallback_rate_ci"] = list(wilson(row["fallbacks"], row["requests"]))
    return row


def _day(iso: str) -> str:
    """'2026-11-03T09:40:00.2Z' -> '2026-11-03 09:40:00' (what a reader needs)."""
    return iso[:19].replace("T", " ")


def _t(x: datetime) -> str:
    return x.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def alerts_in_range(client, settings: Settings, start: datetime, end: datetime, where: dict) -> list[dict]:
    """One dict per alert with a firing or resolved row at a time in [start, end)."""
    cond = ["at >= toDateTime64({a:Float64}, 3, 'UTC')", "at < toDateTime64({b:Float64}, 3, 'UTC')"]
    params: dict = {"a": start.timestamp(), "b": end.timestamp()}
    for dim, values in where.items():
        cond.append(f"{dim} IN {{w_{dim}:Array(String)}}")
        params[f"w_{dim}"] = list(values)
    res = client.query(
        "SELECT alert_id, any(rule), any(severity), any(service), any(feature), any(model), any(variant), "
        "argMax(summary, at), min(starts_at), minIf(at, status = 'firing'), maxIf(at, status = 'resolved'), "
        "argMax(status, at), argMaxIf(value, at, status = 'firing'), any(threshold), any(runbook) "
        f"FROM {settings.database}.alerts FINAL WHERE {' AND '.join(cond)} "
        "GROUP BY alert_id ORDER BY min(starts_at), any(rule)", parameters=params)
    out = []
    for (aid, rule, sev, svc, feat, model, variant, summary, starts, fired, resolved, status, value,
         threshold, runbook) in res.result_rows:
        out.append({
            "alert_id": aid, "rule": rule, "severity": sev, "service": svc, "feature": feat, "model": model,
            "variant": variant, "summary": summary, "starts_at": _t(starts),
            "resolved_at": _t(resolved) if status == "resolved" else None, "status": status,
            "value": None if value is None or (isinstance(value, float) and math.isnan(value)) else value,
            "threshold": threshold, "runbook": runbook,
        })
    return out


def worst_interactions(client, settings: Settings, start: datetime, end: datetime, where: dict,
                       per_feature: int = EDGE_CASES_PER_FEATURE) -> list[dict]:
    """Interactions of the range with thumbs-down, corrections, fallbacks or failures, the worst
    first within each feature (score = thumbs-down + 2 x corrections + fallback depth + failed)."""
    db = settings.database
    cond = ["ts >= toDateTime64({a:Float64}, 3, 'UTC')", "ts < toDateTime64({b:Float64}, 3, 'UTC')", "NOT shadow"]
    params: dict = {"a": start.timestamp(), "b": end.timestamp(), "n": per_feature}
    for dim, values in where.items():
        cond.append(f"{dim} IN {{w_{dim}:Array(String)}}")
        params[f"w_{dim}"] = list(values)
    sql = f"""
SELECT i.feature, i.model, i.variant, i.interaction_id, i.ts, i.outcome, i.fallback_depth, i.error_type,
       i.prompt, i.response, f.down, f.corrections, f.correction,
       f.down + 2 * f.corrections + i.fallback_depth
         + (i.outcome IN ('error', 'timeout', 'refused', 'rejected_output')) AS score
FROM (SELECT feature, model, variant, interaction_id, ts, outcome, fallback_depth, error_type, prompt, response
      FROM {db}.interactions FINAL WHERE {' AND '.join(cond)}) AS i
LEFT JOIN (SELECT interaction_id, countIf(feedback_type = 'thumbs_down') AS down,
                  countIf(feedback_type = 'human_correction') AS corrections,
                  anyIf(correction, feedback_type = 'human_correction') AS correction
           FROM {db}.feedback FINAL WHERE ts >= toDateTime64({{a:Float64}}, 3, 'UTC')
           GROUP BY interaction_id) AS f ON f.interaction_id = i.interaction_id
WHERE score > 0
ORDER BY i.feature, score DESC, i.ts
LIMIT {{n:UInt32}} BY i.feature"""
    res = client.query(sql, parameters=params)
    return [dict(zip(("feature", "model", "variant", "interaction_id", "ts", "outcome", "fallback_depth",
                      "error_type", "prompt", "response", "thumbs_down", "corrections", "correction", "score"), r))
            | {"ts": _t(r[4])} for r in res.result_rows]


def gather(client, settings: Settings, start: datetime, end: datetime, where: dict | None = None,
           progress=None) -> dict:
    """Everything the review shows, as plain data (also embedded in the HTML as JSON)."""
    where = where or {}
    buckets = trend_buckets(start, end)
    step = progress or (lambda what, n=1: None)
    data: dict = {"from": _t(start), "to": _t(end), "where": where, "generated_at": _t(datetime.now(timezone.utc))}
    data["total"] = [with_intervals(r) for r in metrics_query(client, settings, [], start, end, where)]
    data["by_feature_model"] = [with_intervals(r) for r in
                                metrics_query(client, settings, ["feature", "model"], start, end, where)]
    step("totals")
    trend = []
    for a, b in buckets:
        rows = metrics_query(client, settings, ["feature", "model"], a, b, where)
        trend.append({"from": _t(a), "to": _t(b), "partial": (b - a) < (buckets[0][1] - buckets[0][0]),
                      "rows": [with_cost_per_request(r) for r in rows]})
        step("trends")
    data["trend"] = trend
    arms = [with_intervals(r) for r in metrics_query(client, settings, ["feature", "variant"], start, end, where)]
    rollouts: dict[str, list] = {}
    for r in arms:
        rollouts.setdefault(r["feature"], []).append(r)
    data["rollouts"] = {f: rs for f, rs in rollouts.items()
                        if len(rs) > 1 or any(r["variant"] not in CONTROL_ARMS for r in rs)}
    step("rollouts")
    data["alerts"] = alerts_in_range(client, settings, start, end, where)
    step("alerts")
    data["edge_cases"] = worst_interactions(client, settings, start, end, where)
    step("edge cases")
    return data


# ------------------------------------------------------------------ charts

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def trend_chart(data: dict, figure: str, title: str, ylabel: str, percent: bool) -> str | None:
    """A base64 PNG: one line per feature/model; None when no bucket has the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    plt.rcParams["text.parse_math"] = False
    series: dict[str, tuple[list, list]] = {}
    for b in data["trend"]:
        mid = datetime.fromisoformat(b["from"].replace("Z", "+00:00"))
        for r in b["rows"]:
            v = r.get(figure)
            if v is None:
                continue
            xs, ys = series.setdefault(f"{r['feature'] or '(no feature)'} / {r['model'] or '(no model)'}", ([], []))
            xs.append(mid)
            ys.append(100 * v if percent else v)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for name, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, marker="o", ms=3, lw=1.4, label=name)
    ax.set_title(title, loc="left", fontsize=11, weight="bold")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    locator = mdates.AutoDateLocator(tz=timezone.utc)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))
    ax.set_xlabel(f"bucket start (UTC), {_day(data['trend'][0]['from'])} .. {_day(data['trend'][-1]['to'])}")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    return _png(fig)


def rollout_chart(feature: str, arms: list[dict]) -> str:
    """Error and fallback rate per arm with their 95 % Wilson intervals, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["text.parse_math"] = False
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
    names = [a["variant"] or "(none)" for a in arms]
    for ax, fig_name, label in ((axes[0], "error_rate", "error rate"), (axes[1], "fallback_rate", "fallback rate")):
        vals = [100 * (a[fig_name] or 0) for a in arms]
        lo = [v - 100 * (a[f"{fig_name}_ci"][0] or 0) for v, a in zip(vals, arms)]
        hi = [100 * (a[f"{fig_name}_ci"][1] or 0) - v for v, a in zip(vals, arms)]
        ax.barh(names, vals, xerr=[lo, hi], color=["#1f60c4", "#fa6400", "#37872d", "#8f3bb8"][: len(arms)],
                capsize=4, alpha=0.85)
        ax.set_xlabel(f"{label} (%), bars = 95 % Wilson interval")
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{feature}: arms side by side", x=0.01, ha="left", fontsize=11, weight="bold")
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------ HTML

def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f" <small>[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]</small>"


def _num(v, fmt="{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _usd(v) -> str:
    return "-" if v is None else (f"${v:,.2f}" if abs(v) >= 1 else f"${v:.6f}")


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


FIGURE_HEADERS = ["requests", "error rate [95% CI]", "fallback rate [95% CI]", "escalation rate", "P95 ms",
                  "satisfaction", "accuracy", "cost", "cost / request"]


def _figure_cells(r: dict) -> list[str]:
    sat = "-" if r["satisfaction"] is None else f"{_pct(r['satisfaction'])} ({r['feedback_up']}/{r['feedback_down']})"
    acc = "-" if r["accuracy"] is None else f"{_pct(r['accuracy'])} ({r['correct']}/{r['evaluated']})"
    return [f"{r['requests']:,}", _pct(r["error_rate"]) + _ci(r["error_rate_ci"]),
            _pct(r["fallback_rate"]) + _ci(r["fallback_rate_ci"]), _pct(r["escalation_rate"]),
            _num(r["latency_p95_ms"]), sat, acc, _usd(r["cost_usd"]), _usd(r["cost_per_request"])]


def _alert_rows(alerts: list[dict]) -> list[list[str]]:
    return [[html.escape(a["rule"]), html.escape(a["severity"]),
             html.escape(", ".join(f"{k}={a[k]}" for k in ("service", "feature", "model", "variant") if a[k])),
             a["starts_at"][:19].replace("T", " "), (a["resolved_at"] or "still firing")[:19].replace("T", " "),
             html.escape(a["summary"])] for a in alerts]


def _text(v) -> str:
    if v is None:
        return '<span class="off">(text capture off)</span>'
    return html.escape(v[:TEXT_CHARS] + ("..." if len(v) > TEXT_CHARS else ""))


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{margin-bottom:0}h2{border-bottom:2px solid #dde3ea;padding-bottom:4px;margin-top:36px}
.sub{color:#666;margin-top:4px}table{border-collapse:collapse;margin:8px 0 16px;width:100%;font-size:12.5px}
th,td{border:1px solid #dde3ea;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#eef1f5}td:first-child,td:nth-child(2){text-align:left}small{color:#666}
img{width:100%;max-width:1100px;display:block;margin:8px 0}.off{color:#999;font-style:italic}
table.text td{text-align:left}table.text code{font-size:11px;word-break:break-all}.note{color:#555;background:#f6f8fa;padding:8px 12px;border-left:3px solid #9ab}"""


def render_html(data: dict, charts: dict[str, str | None], rollout_charts: dict[str, str]) -> str:
    where = ", ".join(f"{k}={'|'.join(v)}" for k, v in data["where"].items()) or "all services"
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>aipulse review {data['from'][:10]}"
             f" to {data['to'][:10]}</title><style>{CSS}</style></head><body>",
             "<h1>aipulse monthly review</h1>",
             f"<p class=sub>{_day(data['from'])} to {_day(data['to'])} UTC (end exclusive), "
             f"{html.escape(where)}; generated {_day(data['generated_at'])} UTC from the ClickHouse window rows "
             "(the same read as <code>aipulse metrics</code>).</p>"]
    parts.append("<h2>Summary by feature and model</h2>")
    rows = [[html.escape(r["feature"] or "(no feature)"), html.escape(r["model"] or "(no model)"), *_figure_cells(r)]
            for r in data["by_feature_model"]]
    rows += [["<b>all</b>", "", *_figure_cells(r)] for r in data["total"]]
    parts.append(_table(["feature", "model", *FIGURE_HEADERS], rows, "figures") if rows
                 else "<p class=note>No window rows in this range.</p>")
    parts.append("<h2>Trends</h2><p class=sub>One point per bucket of "
                 f"{len(data['trend'])} in the range; every point is a rate, so a partial last bucket is no drop.</p>")
    for figure, title, _, _ in TRENDS:
        img = charts.get(figure)
        parts.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{img}">' if img
                     else f"<p class=note>{html.escape(title)}: no data in this range.</p>")
    parts.append("<h2>Rollouts</h2>")
    if not data["rollouts"]:
        parts.append("<p class=note>No feature had more than one arm in this range.</p>")
    canary = [a for a in data["alerts"] if a["rule"].startswith(CANARY_RULE_PREFIX)]
    for feature, arms in data["rollouts"].items():
        parts.append(f"<h3>{html.escape(feature)}</h3>")
        parts.append(_table(["arm", "feature", *FIGURE_HEADERS],
                            [[html.escape(a["variant"] or "(none)"), html.escape(feature), *_figure_cells(a)]
                             for a in arms]))
        parts.append(f'<img alt="{html.escape(feature)} arms" src="data:image/png;base64,{rollout_charts[feature]}">')
        mine = [a for a in canary if a["feature"] in ("", feature)]
        parts.append(_table(["canary alert", "severity", "group", "fired", "resolved", "summary"], _alert_rows(mine),
                            "text") if mine else "<p class=note>No canary alert for this feature in the range.</p>")
    parts.append("<h2>Worst edge cases</h2><p class=sub>Interactions with thumbs-down, corrections, fallbacks or "
                 f"failures, worst first (up to {EDGE_CASES_PER_FEATURE} per feature); prompt and response only where "
                 "the application enabled text capture.</p>")
    by_feature: dict[str, list] = {}
    for e in data["edge_cases"]:
        by_feature.setdefault(e["feature"], []).append(e)
    if not by_feature:
        parts.append("<p class=note>None in this range.</p>")
    for feature, cases in by_feature.items():
        parts.append(f"<h3>{html.escape(feature)}</h3>")
        parts.append(_table(
            ["interaction", "model / arm", "when", "outcome", "thumbs down", "corrections", "prompt", "response",
             "correction"],
            [[f"<code>{html.escape(e['interaction_id'])}</code>",
              html.escape((e["model"] or "(no model)") + (f" / {e['variant']}" if e["variant"] else "")),
              e["ts"][:19].replace("T", " "),
              html.escape(e["outcome"] + (f" (depth {e['fallback_depth']})" if e["fallback_depth"] else "")
                          + (f" {e['error_type']}" if e["error_type"] else "")),
              str(e["thumbs_down"]), str(e["corrections"]), _text(e["prompt"]), _text(e["response"]),
              html.escape(e["correction"] or "")] for e in cases], "text"))
    parts.append("<h2>Alerts of the period</h2><p class=sub>From the <code>alerts</code> table the streaming "
                 "detector writes (one firing and one resolved row per alert).</p>")
    parts.append(_table(["rule", "severity", "group", "fired", "resolved", "summary"], _alert_rows(data["alerts"]),
                        "text") if data["alerts"] else "<p class=note>No alert fired in this range.</p>")
    blob = json.dumps(data, default=str, allow_nan=False).replace("</", "<\\/")
    parts.append(f'<script type="application/json" id="aipulse-report-data">{blob}</script></body></html>')
    return "\n".join(parts)


def build_report(client, settings: Settings, start: datetime, end: datetime, out_path: Path,
                 where: dict | None = None, console: Console | None = None) -> dict:
    """Gather, chart and write the review to ``out_path``; returns the embedded data."""
    console = console or Console(stderr=True)
    n_steps = len(trend_buckets(start, end)) + 5
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("reading ClickHouse", total=n_steps + len(TRENDS) + 1)
        data = gather(client, settings, start, end, where,
                      progress=lambda what, n=1: bar.update(task, advance=n, description=f"reading {what}"))
        charts = {}
        for figure, title, ylabel, percent in TRENDS:
            bar.update(task, description=f"drawing {figure}")
            charts[figure] = trend_chart(data, figure, title, ylabel, percent)
            bar.advance(task)
        rollout_charts = {f: rollout_chart(f, arms) for f, arms in data["rollouts"].items()}
        bar.update(task, advance=1, description="writing HTML")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(render_html(data, charts, rollout_charts), encoding="utf-8")
    return data


# ------------------------------------------------------------------ CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_time_range(parser, "-30d")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.html", help="the HTML file to write")
    add_where(parser, "a dimension (service, feature, model, variant)")


def run(args: argparse.Namespace, settings: Settings | None = None, client=None) -> int:
    """Write the review; 0 on success, 2 on a usage error, 1 when ClickHouse fails."""
    settings = settings or Settings.from_env()

    def write():
        start, end = time_range(args)
        if args.out.suffix.lower() not in (".html", ".htm"):
            raise ReportError(f"--out {args.out} must end in .html")
        where = parse_where(args.where)
        return build_report(client or connect(settings), settings, start, end, args.out, where)

    code, data = guarded("report", write, usage_errors=(ReportError,))
    if code:
        return code
    total = data["total"][0]["requests"] if data["total"] else 0
    print(f"{args.out}: {total:,} requests, {len(data['rollouts'])} rollouts, {len(data['alerts'])} alerts, "
          f"{len(data['edge_cases'])} edge cases")
    return 0


__all__ = ["add_arguments", "run", "build_report", "gather", "render_html", "trend_buckets"]

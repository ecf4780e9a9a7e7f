"""A latency chart from window rows: P50/P95/P99 per window and feature, as a PNG.

    >>> write_latency_chart(client, settings, "demo", start, end, Path("demo-latency.png"))  # doctest: +SKIP

Quantiles come from the merged sketches of each 10 s window (``aipulse_quantile``), the
same numbers Grafana's latency panels show; the error-rate panel divides summed counts.
"""
from __future__ import annotations

from datetime import timezone
from pathlib import Path

from ..config import Settings

QUANTILES = (("p50", 0.5, ":"), ("p95", 0.95, "--"), ("p99", 0.99, "-"))


def window_series(client, settings: Settings, service: str, start: float, end: float) -> list[tuple]:
    """(window_start, feature, requests, errors, p50, p95, p99) per window and feature."""
    q = ", ".join(f"aipulse_quantile({v}, sumMap(latency_buckets))" for _n, v, _s in QUANTILES)
    return client.query(
        f"SELECT window_start, feature, sum(requests), sum(errors), {q} "
        f"FROM {settings.database}.metrics_window FINAL "
        "WHERE service = {s:String} AND window_start >= toDateTime({a:Int64}, 'UTC') "
        "AND window_start < toDateTime({b:Int64}, 'UTC') "
        "GROUP BY window_start, feature HAVING sum(requests) > 0 ORDER BY window_start, feature",
        parameters={"s": service, "a": int(start), "b": int(end) + 1},
    ).result_rows


MARK_MERGE_S = 3.0  # alert marks this close (one Alertmanager group) share one line and label


def merge_marks(alerts) -> list[tuple[float, str, list[str]]]:
    """(time, status, rule) marks -> (time, status, [rules]) with near-simultaneous marks of the
    same status merged, so their rotated labels do not print over each other.

        >>> merge_marks([(10.0, "firing", "a"), (11.0, "firing", "b"), (30.0, "firing", "a")])
        [(10.0, 'firing', ['a', 'b']), (30.0, 'firing', ['a'])]
    """
    out: list[tuple[float, str, list[str]]] = []
    for ts, status, rule in sorted(alerts):
        for t0, st, rules in out:
            if st == status and abs(ts - t0) <= MARK_MERGE_S:
                if rule not in rules:
                    rules.append(rule)
                break
        else:
            out.append((ts, status, [rule]))
    return out


def write_latency_chart(client, settings: Settings, service: str, start: float, end: float, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = window_series(client, settings, service, start, end)
    if not rows:
        return None
    features = sorted({r[1] for r in rows})
    fig, (ax, ax_err) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, feature in enumerate(features):
        mine = [r for r in rows if r[1] == feature]
        t = [r[0].replace(tzinfo=timezone.utc) if r[0].tzinfo is None else r[0] for r in mine]
        for j, (name, _q, style) in enumerate(QUANTILES):
            ax.plot(t, [r[4 + j] for r in mine], style, color=colors[i % len(colors)], label=f"{feature} {name}")
        ax_err.plot(t, [100.0 * r[3] / r[2] for r in mine], "-", color=colors[i % len(colors)], label=feature)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"aipulse: latency per {settings.window_s} s window, service '{service}' "
                 f"(P50/P95/P99 from merged sketches, 1 % accuracy)")
    ax.legend(ncol=len(features), fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    ax_err.set_ylabel("error rate (%)")
    ax_err.set_xlabel("window start (UTC)")
    ax_err.legend(fontsize=8, loc="upper left")
    ax_err.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path





# ------------------------------------------------------------------ the demo's charts

# (file stem, title, y label, transform of a bin's sums -> value or None)
DEMO_CHARTS = ("p99", "fallback", "cost", "satisfaction")


def bin_series(client, settings: Settings, service: str, start: float, end: float, bin_s: int,
               complete_before: float) -> list[dict]:
    """Sums per (bin, feature) from the window rows; only bins whose every base window ended
    before ``complete_before`` (the last, still-open window is not a drop)."""
    res = client.query(
        "SELECT toUnixTimestamp(toStartOfInterval(window_start, INTERVAL {bin:UInt32} second)) AS b, feature, "
        "sum(requests) AS requests, sum(errors) AS errors, sum(fallbacks) AS fallbacks, sum(cost_usd) AS cost_usd, "
        "sum(feedback_up) AS up, sum(feedback_down) AS down, "
        "aipulse_quantile(0.99, sumMap(latency_buckets)) AS p99 "
        f"FROM {settings.database}.metrics_window FINAL "
        "WHERE service = {s:String} AND window_start >= toDateTime({a:Int64}, 'UTC') "
        "AND window_start < toDateTime({z:Int64}, 'UTC') GROUP BY b, feature ORDER BY b, feature",
        parameters={"bin": bin_s, "s": service, "a": int(start) // bin_s * bin_s, "z": int(end) + 1})
    rows = [dict(zip(res.column_names, r)) for r in res.result_rows]
    return [r for r in rows if r["b"] + bin_s <= complete_before and r["b"] >= start - bin_s]


def write_demo_charts(client, settings: Settings, service: str, start: float, end: float,
                      alerts: list[tuple[float, str, str]], out_dir: Path,
                      phases: list[tuple[float, str]] = ()) -> list[Path]:
    """P99, fallback rate, cost and satisfaction over time per feature, with the alerts
    (firing: red line, resolved: green dashed) and the scenario's phases marked.

    Only complete bins are drawn: a bin is kept when all its windows ended before the last
    request (``end``), so the run's last, partial window does not draw a false drop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import datetime

    w = settings.window_s
    fine = bin_series(client, settings, service, start, end, w, end)
    coarse = bin_series(client, settings, service, start, end, 3 * w, end)  # feedback is sparse
    specs = [
        ("p99", fine, "P99 latency per feature", "P99 latency (ms)", lambda r: r["p99"] if r["requests"] else None),
        ("fallback", fine, "Fallback rate per feature", "fallback rate (%)",
         lambda r: 100.0 * r["fallbacks"] / r["requests"] if r["requests"] else None),
        ("cost", fine, "Cost per feature", f"cost per {w} s window (USD)", lambda r: r["cost_usd"]),
        ("satisfaction", coarse, "Satisfaction per feature (thumbs up / all thumbs)",
         f"satisfaction per {3 * w} s (%)",
         lambda r: 100.0 * r["up"] / (r["up"] + r["down"]) if (r["up"] + r["down"]) >= 5 else None),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    t = lambda s: datetime.fromtimestamp(s, timezone.utc)  # noqa: E731
    for stem, rows, title, ylabel, fn in specs:
        fig, ax = plt.subplots(figsize=(11, 4.8))
        features = sorted({r["feature"] for r in rows})
        for i, feat in enumerate(features):
            pts = [(t(r["b"]), fn(r)) for r in rows if r["feature"] == feat]
            pts = [(x, y) for x, y in pts if y is not None and y == y]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], "-o", ms=2.5, lw=1.4,
                        color=colors[i % len(colors)], label=feat)
        top = ax.get_ylim()[1]
        for ts, name in phases:
            ax.axvline(t(ts), color="0.6", lw=0.8, ls=":")
            ax.text(t(ts), top, f" {name}", fontsize=7, color="0.4", va="top", rotation=90)
        seen = set()
        for ts, status, rules in merge_marks(alerts):
            firing = status == "firing"
            label = ("alert fired" if firing else "alert resolved")
            ax.axvline(t(ts), color="tab:red" if firing else "tab:green", lw=1.0, ls="-" if firing else "--",
                       alpha=0.8, label=None if label in seen else label)
            seen.add(label)
            ax.text(t(ts), top * 0.97, " " + ", ".join(rules), fontsize=6.5, rotation=90, va="top",
                    color="tab:red" if firing else "tab:green")
        if stem == "p99":
            ax.set_yscale("log")
        ax.set_title(f"aipulse demo, service '{service}': {title}")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("time (UTC)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=timezone.utc))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", ncol=3)
        fig.tight_layout()
        path = out_dir / f"demo-{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


__all__ = ["write_latency_chart", "window_series", "write_demo_charts", "bin_series"]

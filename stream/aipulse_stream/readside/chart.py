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


__all__ = ["write_latency_chart", "window_series"]


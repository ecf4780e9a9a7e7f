"""`aipulse grafana render`: a PNG preview of every provisioned dashboard, panel by panel.

    aipulse grafana render --out previews/ [--from -1h] [--to now] [--prometheus-url URL]
    >>> render_all(client, Path("previews"), start, end)      # doctest: +SKIP
    [PosixPath('previews/aipulse-overview.png'), ...]

This is a preview, not Grafana. It draws the same dashboard JSON Grafana is provisioned with
(built from :mod:`.boards`, as `aipulse grafana export` writes it to
``dashboards/provisioning/dashboards/json``) and runs each ClickHouse target's rawSql after
the same expansion (:func:`aipulse_grafana.plugin_macros.render`: $__conditionalAll, the
variables, the plugin's macros; every variable at All, options from its own query), then
draws it with matplotlib at the JSON's gridPos with the panel's title, unit, thresholds and
legend: timeseries (long frames become one series per label value, as the plugin does), stat,
gauge, table, barchart. Prometheus targets run through Prometheus's HTTP API when a
Prometheus is given (:mod:`.prometheus_api`: ``query_range`` with the panel's step, Grafana's
$__rate_interval and $__interval expanded, series named by ``legendFormat``) and are drawn by
the same code; without one they are a labelled placeholder. The Alertmanager alert list is
drawn from the ``alerts`` table the detector writes.
"""
from __future__ import annotations

import json
import math
import re
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import prometheus_api
from .boards import all_boards
from .plugin_macros import ALL, Variable, render
from .prometheus_api import Prometheus, PrometheusError

GRID_COLS = 24
CELL_W_IN, CELL_H_IN = 0.82, 0.42       # one grid column / row, in inches (Grafana: ~30 px rows)
MAX_POINTS = 400                        # like Grafana's maxDataPoints for a panel this wide
NICE_INTERVALS_S = (10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
MIN_INTERVAL_S = 10                     # the base window: finer buckets would be empty
COLORS = {"green": "#37872d", "red": "#c4162a", "orange": "#fa6400", "yellow": "#e0b400", "blue": "#1f60c4"}
DB_IN_JSON = "aipulse"
HEADER_IN = 0.95                        # board title and subtitle above the grid
PANEL_GAP_IN = 0.05                     # space between neighbouring panels
TITLE_IN = 0.38                         # the panel title, inside the panel's box
LEGEND_IN = 0.75                        # x tick labels and legend below a timeseries or bar plot


# ------------------------------------------------------------------ units (Grafana's names)

def fmt_value(v, unit: str | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "No data"
    if not isinstance(v, (int, float)):
        return str(v)
    unit = unit or "short"
    if unit == "percentunit":
        return f"{100 * v:.2f}%"
    if unit == "percent":
        return f"{v:.1f}%"
    if unit == "currencyUSD":
        return f"${v:,.2f}" if abs(v) >= 0.01 or v == 0 else f"${v:.4f}"
    if unit == "ms":
        return f"{v / 1000:.2f} s" if abs(v) >= 10000 else f"{v:,.0f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    if unit in ("reqps", "ops"):
        return f"{v:,.2f} {'req/s' if unit == 'reqps' else 'ops/s'}"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f} Mil"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f} K"
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.3g}"


UNIT_LABEL = {"ms": "ms", "s": "seconds", "percentunit": "%", "percent": "%", "currencyUSD": "USD",
              "reqps": "requests/s", "ops": "ops/s", "short": ""}


def _axis_formatter(unit: str | None):
    from matplotlib.ticker import FuncFormatter

    if unit == "percentunit":
        return FuncFormatter(lambda v, _: f"{100 * v:.3g}%")
    if unit == "currencyUSD":
        return FuncFormatter(lambda v, _: f"${v:.3g}")
    return None


def threshold_color(v, steps: list[dict]) -> str:
    color = "green"
    for s in steps or []:
        if s.get("value") is None or (isinstance(v, (int, float)) and v >= s["value"]):
            color = s.get("color", color)
    return COLORS.get(color, color)


# ------------------------------------------------------------------ queries

def interval_for(start: datetime, end: datetime) -> int:
    """Grafana's $__interval: range / max data points, rounded up to a nice interval."""
    raw = max(MIN_INTERVAL_S, (end - start).total_seconds() / MAX_POINTS)
    return next((n for n in NICE_INTERVALS_S if n >= raw), NICE_INTERVALS_S[-1])


def _sql_for_db(sql: str, database: str) -> str:
    return sql if database == DB_IN_JSON else re.sub(rf"\b{DB_IN_JSON}\.(?=[a-z_])", f"{database}.", sql)


def variables(client, board: dict, start, end, database: str) -> list[Variable]:
    """Every query variable at All, with its options from its own query (as Grafana loads them)."""
    out = []
    for v in board.get("templating", {}).get("list", []):
        q = v.get("query")
        sql = q.get("rawSql") if isinstance(q, dict) else q
        options: list[str] = []
        if v.get("type") == "query" and sql:
            rows = client.query(_sql_for_db(render(sql, start, end, 60, out), database)).result_rows
            options = [str(r[0]) for r in rows]
        out.append(Variable(v["name"], ALL, options))
    return out


def run_target(client, target: dict, start, end, interval_s, vars_, database: str):
    sql = _sql_for_db(render(target["rawSql"], start, end, interval_s, vars_), database)
    res = client.query(sql)
    return list(res.column_names), [list(r) for r in res.result_rows]


def long_to_series(cols: list[str], rows: list[list]) -> dict[str, tuple[list, list]]:
    """The plugin's time-series frames: column 0 is time, string columns are labels, each
    numeric column is a value; one series per (value column, label values).

    A row whose labels are all empty (window rows with no model, e.g. requests whose whole
    fallback chain failed) is its own series named ``(no model)``, not the bare value
    column's name; a series with no finite value is dropped (it would only add a legend entry).
    """
    if not rows:
        return {}
    labels = [i for i in range(1, len(cols)) if isinstance(rows[0][i], str)]
    values = [i for i in range(1, len(cols)) if i not in labels]
    series: dict[str, tuple[list, list]] = {}
    for r in rows:
        lab = " ".join(str(r[i]) for i in labels).strip()
        if labels and not lab:
            lab = "(no " + " ".join(cols[i] for i in labels) + ")"
        for i in values:
            name = (f"{cols[i]} {lab}" if len(values) > 1 else lab or cols[i]).strip() or cols[i]
            xs, ys = series.setdefault(name, ([], []))
            t = r[0] if isinstance(r[0], datetime) else datetime.fromtimestamp(float(r[0]), timezone.utc)
            xs.append(t if t.tzinfo else t.replace(tzinfo=timezone.utc))
            v = r[i]
            ys.append(float("nan") if v is None else float(v))
    return {k: v for k, v in series.items() if any(y == y for y in v[1])}


# ------------------------------------------------------------------ drawing

def _unit_of(panel: dict, col: str | None = None) -> str | None:
    fc = panel.get("fieldConfig") or {}
    for o in fc.get("overrides") or []:
        if col is not None and o.get("matcher", {}).get("options") == col:
            for p in o.get("properties", []):
                if p.get("id") == "unit":
                    return p.get("value")
    return (fc.get("defaults") or {}).get("unit")


def _steps(panel: dict) -> list[dict]:
    return ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds", {}).get("steps") or []


def _legend(panel: dict) -> dict:
    return ((panel.get("options") or {}).get("legend")) or {"showLegend": True, "displayMode": "list"}


def complete_buckets(series: dict[str, tuple[list, list]], start: datetime, end: datetime,
                     interval_s: int) -> dict[str, tuple[list, list]]:
    """Only the time buckets wholly inside [start, end].

    A bucket the range cuts (the first, when ``start`` is not on a bucket edge, and the last,
    still filling at ``end``; with ``end`` = now, its windows are still open) holds part of
    its traffic: drawn, a count or a cost would show a false drop at the right edge."""
    lo, hi = start.timestamp(), end.timestamp()
    out = {}
    for name, (xs, ys) in series.items():
        keep = [(x, y) for x, y in zip(xs, ys) if x.timestamp() >= lo and x.timestamp() + interval_s <= hi]
        if any(y == y for _, y in keep):
            out[name] = ([x for x, _ in keep], [y for _, y in keep])
    return out


def time_format(span_s: float) -> str:
    """Tick labels that differ from each other: seconds on a range of minutes, dates past a day."""
    return "%H:%M:%S" if span_s <= 15 * 60 else "%H:%M" if span_s <= 86400 else "%m-%d %H:%M"


def draw_timeseries(ax, panel, frames, window: tuple[datetime, datetime, int] | None = None,
                    buckets: bool = True) -> int:
    """``window``: (start, end, bucket seconds), the x axis (the dashboard's range, as Grafana
    draws every panel); with ``buckets``, buckets the range cuts are not drawn (Prometheus
    points are instants, not buckets: none is partial)."""
    unit = _unit_of(panel)
    n = 0
    for cols, rows in frames:
        series = long_to_series(cols, rows)
        if window is not None and buckets:
            series = complete_buckets(series, *window)
        for name, (xs, ys) in series.items():
            ax.plot(xs, ys, lw=1.3, label=name)
            n += sum(1 for y in ys if y == y)
    steps = _steps(panel)
    mode = (((panel.get("fieldConfig") or {}).get("defaults") or {}).get("custom") or {}).get(
        "thresholdsStyle", {}).get("mode", "off")
    if mode != "off":
        for s in steps:
            if s.get("value") is not None:
                ax.axhline(s["value"], color=threshold_color(s["value"], steps), ls="--", lw=1, alpha=0.8)
    f = _axis_formatter(unit)
    if f:
        ax.yaxis.set_major_formatter(f)
    if UNIT_LABEL.get(unit or "short"):
        ax.set_ylabel(UNIT_LABEL[unit], fontsize=7)
    import matplotlib.dates as mdates

    if window is not None:
        ax.set_xlim(window[0], window[1])
    span_s = (window[1] - window[0]).total_seconds() if window is not None else 86400
    ax.xaxis.set_major_formatter(mdates.DateFormatter(time_format(span_s), tz=timezone.utc))
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.25)
    leg = _legend(panel)
    if leg.get("showLegend", True) and leg.get("displayMode") != "hidden" and ax.lines:
        h_in = ax.get_position().height * ax.figure.get_figheight()  # below the tick labels, in inches
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.24 / h_in), ncol=4, frameon=False)
    return n


def draw_stat(ax, panel, frames, gauge: bool = False) -> int:
    unit = _unit_of(panel)
    vals = []
    for cols, rows in frames:
        if rows:
            last = rows[-1]  # reduceOptions lastNotNull over a one-row table
            vals += [(c, v) for c, v in zip(cols, last) if isinstance(v, (int, float)) or v is None]
    ax.axis("off")
    if not vals:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", fontsize=14, color="0.5", transform=ax.transAxes)
        return 0
    steps = _steps(panel)
    for i, (col, v) in enumerate(vals[:3]):
        y = 0.5 if len(vals) == 1 else 0.8 - i * 0.3
        color = threshold_color(v, steps)
        if gauge and isinstance(v, (int, float)):
            import matplotlib.patches as mp

            lo = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("min", 0)
            hi = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("max") or (1 if unit == "percentunit" else 100)
            frac = max(0.0, min(1.0, (v - lo) / ((hi - lo) or 1)))
            ax.add_patch(mp.Wedge((0.5, 0.25), 0.35, 0, 180, width=0.08, color="0.85", transform=ax.transAxes))
            ax.add_patch(mp.Wedge((0.5, 0.25), 0.35, 180 - 180 * frac, 180, width=0.08, color=color,
                                  transform=ax.transAxes))
        ax.text(0.5, y, fmt_value(v, _unit_of(panel, col) or unit), ha="center", va="center",
                fontsize=18 if len(vals) == 1 else 12, color=color, weight="bold", transform=ax.transAxes)
    return sum(v is not None for _, v in vals)


def draw_table(ax, panel, frames, max_rows: int = 12) -> int:
    ax.axis("off")
    cols, rows = frames[0] if frames else ([], [])
    if not rows:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color="0.5", transform=ax.transAxes)
        return 0
    cells = [[fmt_value(v, _unit_of(panel, c)) if isinstance(v, (int, float)) else "-" if v is None else str(v)
              for c, v in zip(cols, r)] for r in rows[:max_rows]]
    # Wide tables (the rollout deltas) get headers wrapped at "_" so no header prints over its
    # neighbour; the header row grows to the wrapped lines.
    box_w_in = ax.get_position().width * ax.figure.get_figwidth()
    fits = max(6, int(box_w_in / max(1, len(cols)) * 72 / 4.2))  # characters per column at 6.5 pt
    labels = [c if len(c) <= fits else "\n".join(textwrap.wrap(c.replace("_", " "), fits)).replace(" ", "_")
              for c in cols]
    lines = max(label.count("\n") + 1 for label in labels)
    t = ax.table(cellText=cells, colLabels=labels, loc="upper center", cellLoc="right", colLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(6.5 if len(cols) <= 12 else 5.5)
    t.scale(1, 1.05)
    for (r, _c), cell in t.get_celld().items():
        cell.set_edgecolor("0.85")
        if r == 0:
            cell.set_facecolor("#eef1f5")
            cell.set_text_props(weight="bold")
            cell.set_height(cell.get_height() * lines)
    if len(rows) > max_rows:
        ax.text(1, 0, f"{len(rows) - max_rows} more rows", ha="right", va="bottom", fontsize=6, color="0.4",
                transform=ax.transAxes)
    return len(rows)


def draw_bar(ax, panel, frames) -> int:
    cols, rows = frames[0] if frames else ([], [])
    if not rows:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color="0.5", transform=ax.transAxes)
        return 0
    xs = [str(r[0]) for r in rows]
    vals = [i for i in range(1, len(cols)) if isinstance(rows[0][i], (int, float))]
    width = 0.8 / max(1, len(vals))
    for k, i in enumerate(vals):
        ax.bar([j + k * width for j in range(len(xs))], [r[i] or 0 for r in rows], width=width, label=cols[i])
    step = max(1, len(xs) // 30)
    ax.set_xticks(range(0, len(xs), step))
    ax.set_xticklabels(xs[::step], rotation=-45, ha="left", fontsize=6)
    ax.set_xlabel(cols[0], fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(True, axis="y", alpha=0.25)
    if _legend(panel).get("showLegend", True):
        ax.legend(fontsize=6.5)
    return len(rows)


def draw_alert_list(ax, client, database: str, start, end) -> int:
    """Alertmanager's list, approximated from the detector's ``alerts`` table: the alerts
    whose latest state in the range is firing (then those that resolved)."""
    ax.axis("off")
    rows = client.query(
        f"SELECT rule, argMax(status, at) AS st, any(severity), any(summary), max(at) "
        f"FROM {database}.alerts FINAL WHERE at >= toDateTime64({{a:Float64}}, 3, 'UTC') "
        f"AND at <= toDateTime64({{b:Float64}}, 3, 'UTC') GROUP BY alert_id, rule ORDER BY st, max(at) DESC LIMIT 8",
        parameters={"a": start.timestamp(), "b": end.timestamp()}).result_rows
    if not rows:
        ax.text(0.5, 0.5, "No alerts in range", ha="center", va="center", color="0.5", transform=ax.transAxes)
    for i, (rule, st, sev, summary, at) in enumerate(rows):
        ax.text(0.01, 0.92 - i * 0.115, f"{st.upper():9} {sev:9} {rule}: {summary[:110]}", fontsize=7,
                family="monospace", color=COLORS["red"] if st == "firing" else COLORS["green"], transform=ax.transAxes)
    ax.text(0.99, 0.0, "from the aipulse.alerts table (the preview does not query Alertmanager)",
            ha="right", va="bottom", fontsize=6, color="0.45", transform=ax.transAxes)
    return len(rows)


def run_prometheus_panel(prom: Prometheus, targets: list[dict], start: datetime, end: datetime):
    """The panel's frames from Prometheus, or (None, the error line) when a query failed."""
    try:
        return [prometheus_api.run_target(prom, t, start, end) for t in targets], None
    except PrometheusError as err:
        return None, str(err)


def render_board(client, board: dict, path: Path, start: datetime, end: datetime,
                 database: str = DB_IN_JSON, prometheus: Prometheus | None = None) -> dict:
    """Draw one dashboard to ``path``; returns {panel title: data points drawn (None = not run:
    a Prometheus panel with no ``prometheus`` given, or a panel type the preview does not draw)}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["text.parse_math"] = False  # "$" in SQL, PromQL and USD values is text
    panels = board["panels"]
    rows_total = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig_w = GRID_COLS * CELL_W_IN
    fig_h = rows_total * CELL_H_IN + HEADER_IN
    fig = plt.figure(figsize=(fig_w, fig_h))
    fx, fy = (lambda inch: inch / fig_w), (lambda inch: inch / fig_h)  # inches -> figure fractions
    fig.text(fx(0.12), 1 - fy(0.18), board["title"], fontsize=15, weight="bold", va="top")
    fig.text(fx(0.12), 1 - fy(0.62), f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC, every variable = All"
             "  |  aipulse preview, not Grafana: same JSON, same SQL" + (", same PromQL" if prometheus else "")
             + "; time buckets cut by the range not drawn", fontsize=8, color="0.35", va="top")
    vars_ = variables(client, board, start, end, database)
    interval = interval_for(start, end)
    drawn: dict = {}
    for p in panels:
        g = p["gridPos"]
        # The panel's box, inside its grid cell with a gap; its title inside the box (as Grafana
        # draws the panel header), so no title ever overlaps the header or the panel above.
        x0, w = g["x"] * CELL_W_IN + PANEL_GAP_IN, g["w"] * CELL_W_IN - 2 * PANEL_GAP_IN
        top, h = HEADER_IN + g["y"] * CELL_H_IN + PANEL_GAP_IN, g["h"] * CELL_H_IN - 2 * PANEL_GAP_IN
        frame = fig.add_axes([fx(x0), 1 - fy(top + h), fx(w), fy(h)])
        frame.set_xticks([])
        frame.set_yticks([])
        for s in frame.spines.values():
            s.set_color("0.82")
        unit = _unit_of(p)
        frame.text(fx(0.1) / fx(w), 1 - 0.08 / h, p.get("title", ""), fontsize=9, weight="bold", va="top",
                   ha="left", transform=frame.transAxes)
        legend_in = LEGEND_IN if p["type"] in ("timeseries", "barchart") else 0.08
        left_in = 0.55 if p["type"] in ("timeseries", "barchart") else 0.15
        ax = fig.add_axes([fx(x0 + left_in), 1 - fy(top + h - legend_in), fx(w - left_in - 0.15),
                           fy(max(0.2, h - TITLE_IN - legend_in))])
        ds = (p.get("datasource") or {}).get("type", "")
        targets = [t for t in p.get("targets") or [] if not t.get("hide")]
        if p["type"] == "alertGroups":
            drawn[p["title"]] = draw_alert_list(ax, client, database, start, end)
            continue
        from_prometheus = ds == "prometheus" and prometheus is not None
        if ds != "grafana-clickhouse-datasource" and not from_prometheus:
            ax.axis("off")
            exprs = "; ".join(t.get("expr", "") for t in targets)[:160]
            why = "no Prometheus given (--prometheus-url)" if ds == "prometheus" else "not run by the preview"
            ax.text(0.5, 0.5, f"{ds or 'other'} datasource: {why}\n{exprs}", ha="center",
                    va="center", fontsize=7, color="0.45", wrap=True, transform=ax.transAxes)
            drawn[p["title"]] = None
            continue
        if from_prometheus:
            frames, error = run_prometheus_panel(prometheus, targets, start, end)
            if error:
                ax.axis("off")
                ax.text(0.5, 0.5, "\n".join(textwrap.wrap(error, 90)), ha="center", va="center", fontsize=7,
                        color=COLORS["red"], transform=ax.transAxes)
                drawn[p["title"]] = 0
                continue
        else:
            frames = [run_target(client, t, start, end, interval, vars_, database) for t in targets]
        kind = p["type"]
        if kind == "timeseries":
            n = draw_timeseries(ax, p, frames, (start, end, interval), buckets=not from_prometheus)
        elif kind in ("stat", "gauge"):
            n = draw_stat(ax, p, frames, gauge=kind == "gauge")
        elif kind == "table":
            n = draw_table(ax, p, frames)
        elif kind in ("barchart", "bargauge", "histogram"):
            n = draw_bar(ax, p, frames)
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, f"panel type {kind} is not previewed", ha="center", va="center", color="0.5",
                    transform=ax.transAxes)
            n = None
        if n == 0 and kind == "timeseries":
            ax.text(0.5, 0.5, "No data", ha="center", va="center", color="0.5", transform=ax.transAxes)
        if unit and kind == "timeseries":
            frame.text(1 - 0.1 / w, 1 - 0.1 / h, f"[{unit}]", fontsize=7, ha="right", va="top", color="0.45",
                       transform=frame.transAxes)
        drawn[p["title"] + ("" if p["title"] not in drawn else f" #{p['id']}")] = n
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return drawn


def load_boards(folder: Path | None = None) -> list[tuple[str, dict]]:
    """(uid, dashboard JSON) of every board: built from the definitions in :mod:`.boards` (the
    JSON `aipulse grafana export` writes; a plain install has no exported files), or read from
    an exported ``folder``."""
    if folder is None:
        return sorted(((b.uid, b.build()) for b in all_boards()), key=lambda t: t[0])
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no dashboard JSON in {folder}: run `aipulse grafana export`")
    return [(f.stem, json.loads(f.read_text())) for f in files]


def render_all(client, out_dir: Path, start, end, database: str = DB_IN_JSON, progress_out=None,
               folder: Path | None = None, on_board: Callable[[str, dict], None] | None = None,
               prometheus: Prometheus | None = None) -> list[Path]:
    """One PNG per dashboard JSON in ``folder``; a rich progress bar on a terminal. Prometheus
    panels are queried from ``prometheus`` (:meth:`Prometheus.connect`), else placeholders."""
    start, end = (_utc(t) for t in (start, end))
    boards = load_boards(folder)
    out_dir = Path(out_dir)
    paths = []
    bar = None
    if progress_out is not None and getattr(progress_out, "isatty", lambda: False)():
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("rendering dashboards", total=len(boards))
    try:
        for stem, board in boards:
            path = out_dir / f"{stem}.png"
            drawn = render_board(client, board, path, start, end, database, prometheus)
            if on_board:
                on_board(stem, drawn)
            paths.append(path)
            if bar:
                bar.advance(task)
    finally:
        if bar:
            bar.stop()
    return paths


def _utc(t) -> datetime:
    if isinstance(t, datetime):
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(t), timezone.utc)


def add_arguments(p) -> None:
    import re as _re

    p._negative_number_matcher = _re.compile(r"^-\d+(\.\d+)?[smhdw]?$")
    p.add_argument("--out", required=True, help="folder for one PNG per dashboard")
    p.add_argument("--from", dest="start", default="-1h", help="start (RFC 3339, epoch, relative like -1h)")
    p.add_argument("--to", dest="end", default="now", help="end (default now)")
    p.add_argument("--prometheus-url", default=None,
                   help="Prometheus for the Prometheus panels, http://user:pass@host:9090 "
                        "(default: AIPULSE_PROMETHEUS_URL, else the local stack's; none: placeholders)")


def run(args, settings) -> int:
    import sys

    from aipulse_stream.readside.times import TimeArgError, parse_time
    from aipulse_stream.storage.clickhouse import connect

    try:
        now = datetime.now(timezone.utc)
        start, end = parse_time(args.start, now), parse_time(args.end, now)
    except TimeArgError as err:
        print(f"aipulse grafana render: {err}", file=sys.stderr)
        return 2
    if end <= start:
        print("aipulse grafana render: --to must be after --from", file=sys.stderr)
        return 2
    prom = None
    url = args.prometheus_url or getattr(settings, "prometheus_url", None)
    if url:
        try:
            prom = Prometheus.connect(url)
        except PrometheusError as err:
            print(f"aipulse grafana render: {err}", file=sys.stderr)
            return 2
    summary = {}
    paths = render_all(connect(settings), Path(args.out), start, end, settings.database, progress_out=sys.stderr,
                       on_board=lambda stem, drawn: summary.__setitem__(stem, drawn), prometheus=prom)
    for path in paths:
        d = summary[path.stem]
        empty = [t for t, n in d.items() if n == 0]
        print(f"{path}  ({sum(1 for n in d.values() if n)} panels with data"
              + (f"; empty: {', '.join(empty)}" if empty else "") + ")")
    if prom is None:
        print("Prometheus panels not drawn: no Prometheus (give --prometheus-url or set AIPULSE_PROMETHEUS_URL)")
    print("a preview drawn by aipulse from the provisioned JSON and its SQL, not Grafana")
    return 0

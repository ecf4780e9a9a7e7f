"""Prometheus targets of the dashboard previews: Grafana's interval variables and the HTTP API.

`aipulse grafana render` runs a panel's PromQL the way Grafana's Prometheus datasource does:
the step is the panel's interval (the range over the panel's max data points, rounded to a
nice interval, never below the scrape interval), start and end are aligned to it, the
interval variables are expanded, and ``/api/v1/query_range`` answers a matrix whose series are
named by the target's ``legendFormat``::

    >>> rate_interval(10, 2), rate_interval(10, 15)
    (12, 60)
    >>> expand("rate(x_total[$__rate_interval])", interval_s=10, scrape_s=2, range_s=600)
    'rate(x_total[12s])'
    >>> legend("{{table}} p99", {"table": "interactions"})
    'interactions p99'
    >>> prom = Prometheus.connect("http://aipulse:s3cret@127.0.0.1:9090")   # doctest: +SKIP
    >>> cols, rows = run_target(prom, {"expr": "up", "legendFormat": "{{job}}"}, start, end)  # doctest: +SKIP

The scrape interval Grafana reads from the datasource's "Scrape interval" setting (15 s when
unset); the preview asks the Prometheus it queries (its configuration, ``/api/v1/status/config``:
the longest interval of its scrape jobs), so the local stack's short interval is used where it
applies. A frame is long, as the ClickHouse plugin's are
(time, series name, value), so the same drawing code draws both.
"""
from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone

import yaml
from aipulse_alerts import basic_auth

GRAFANA_SCRAPE_S = 15           # Grafana's default "Scrape interval" of a Prometheus datasource
MAX_POINTS = 400                # the panel's max data points (as for the ClickHouse panels)
# Grafana's roundInterval targets (seconds), finest first.
NICE_INTERVALS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800,
                    21600, 43200, 86400)
TIMEOUT_S = 30
FRAME_COLUMNS = ["time", "series", "value"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class PrometheusError(RuntimeError):
    """Prometheus unreachable, refusing the credential or a query, worded as one line."""


# ------------------------------------------------------------------ Grafana's interval variables

def interval_for(start: datetime, end: datetime, scrape_s: float) -> int:
    """$__interval in seconds: range / max data points, rounded up to a nice interval, at least
    the scrape interval (Grafana's min interval for a Prometheus datasource)."""
    raw = max(scrape_s, (end - start).total_seconds() / MAX_POINTS)
    return next((n for n in NICE_INTERVALS_S if n >= raw), NICE_INTERVALS_S[-1])


def rate_interval(interval_s: float, scrape_s: float) -> float:
    """$__rate_interval: max($__interval + scrape interval, 4 x scrape interval), Grafana's rule
    (at least four scrapes, so a rate() always has two samples even if one scrape failed)."""
    out = max(interval_s + scrape_s, 4 * scrape_s)
    return int(out) if float(out).is_integer() else out


def duration(seconds: float) -> str:
    """A PromQL duration: whole seconds as ``12s``, otherwise milliseconds."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus duration such as ``2s``, ``1m30s``, ``500ms``."""
    parts = _DURATION.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def expand(expr: str, interval_s: float, scrape_s: float, range_s: float) -> str:
    """Grafana's global variables in a PromQL expression ($__rate_interval, $__interval,
    $__interval_ms, $__range, $__range_s, $__range_ms; also in the ${...} form)."""
    values = {
        "__rate_interval": duration(rate_interval(interval_s, scrape_s)),
        "__interval": duration(interval_s),
        "__interval_ms": str(int(interval_s * 1000)),
        "__range": duration(round(range_s)),
        "__range_s": str(int(round(range_s))),
        "__range_ms": str(int(round(range_s * 1000))),
    }

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


def align(t: datetime, step_s: float) -> datetime:
    """Grafana aligns a query's start and end down to a multiple of the step."""
    return datetime.fromtimestamp(math.floor(t.timestamp() / step_s) * step_s, timezone.utc)


# ------------------------------------------------------------------ the answer as a frame

def legend(fmt: str | None, labels: dict) -> str:
    """The series name from ``legendFormat`` (``{{label}}`` replaced by the label's value);
    without one, Grafana shows the series' selector, ``name{label="value", ...}``."""
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*([^}\s]+)\s*\}\}", lambda m: str(labels.get(m.group(1), "")), fmt)
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else (name or "{}")


def _number(text: str) -> float:
    v = float(text)    # "NaN", "+Inf", "-Inf" included
    return v if math.isfinite(v) else float("nan")


def matrix_to_frame(result: list[dict], legend_format: str | None, step_s: float | None = None
                    ) -> tuple[list[str], list[list]]:
    """A query_range matrix as a long frame: rows (time, series name, value), one series after
    the other, each in time order. Where a series skips more than one step (its target was
    down), a NaN row keeps the line from being drawn across the gap, as Grafana leaves it."""
    rows: list[list] = []
    for s in result:
        name = legend(legend_format, s.get("metric", {}))
        last = None
        for t, v in s.get("values", []):
            t = float(t)
            if step_s and last is not None and t - last > 1.5 * step_s:
                rows.append([datetime.fromtimestamp(last + step_s, timezone.utc), name, float("nan")])
            rows.append([datetime.fromtimestamp(t, timezone.utc), name, _number(v)])
            last = t
    return list(FRAME_COLUMNS), rows


# ------------------------------------------------------------------ the HTTP API

def _get(url: str, path: str, params: dict | None = None, timeout: float = TIMEOUT_S) -> dict:
    full = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    where = basic_auth.redact(url)
    try:
        with urllib.request.urlopen(basic_auth.request(full), timeout=timeout) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as err:
        if err.code == 401:
            raise PrometheusError(f"Prometheus at {where} refused the credential (HTTP 401): "
                                  "put user:password in the URL") from None
        try:
            body = json.loads(err.read())
        except ValueError:
            raise PrometheusError(f"Prometheus at {where} answered HTTP {err.code} to {path}") from None
    except (OSError, ValueError) as err:
        raise PrometheusError(f"cannot reach Prometheus at {where}: {err}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus refused the query: {body.get('errorType', '')}: {body.get('error', '')}")
    return body["data"]


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus to query: base URL (a credential as ``user:password@``) and scrape interval."""
    url: str
    scrape_interval_s: float = GRAFANA_SCRAPE_S

    @classmethod
    def connect(cls, url: str) -> "Prometheus":
        """Check ``url`` answers (with its credential) and learn its scrape interval."""
        return cls(url, scrape_interval_of(_get(url, "/api/v1/status/config").get("yaml", "")))

    def query_range(self, expr: str, start: datetime, end: datetime, step_s: float) -> list[dict]:
        data = _get(self.url, "/api/v1/query_range", {
            "query": expr, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}",
            "step": duration(step_s)})
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"expected a matrix from query_range, got {data.get('resultType')}")
        return data.get("result", [])


def scrape_interval_of(config_yaml: str) -> float:
    """The longest scrape interval of a Prometheus configuration's jobs (a job without its own
    has the global one; Grafana's default when neither says)::

        >>> scrape_interval_of("global: {scrape_interval: 2s}\\nscrape_configs: [{job_name: a}, {job_name: b, scrape_interval: 5s}]")
        5.0
    """
    try:
        cfg = yaml.safe_load(config_yaml) or {}
        default = (cfg.get("global") or {}).get("scrape_interval")
        every = [job.get("scrape_interval", default) for job in cfg.get("scrape_configs") or []] or [default]
        return max(parse_duration(e) for e in every if e) if any(every) else float(GRAFANA_SCRAPE_S)
    except (yaml.YAMLError, ValueError, AttributeError, TypeError):
        return float(GRAFANA_SCRAPE_S)


def run_target(prom: Prometheus, target: dict, start: datetime, end: datetime) -> tuple[list[str], list[list]]:
    """One panel target (``expr``, ``legendFormat``) over [start, end], as Grafana would run it."""
    step = interval_for(start, end, prom.scrape_interval_s)
    expr = expand(target.get("expr", ""), step, prom.scrape_interval_s, (end - start).total_seconds())
    result = prom.query_range(expr, align(start, step), align(end, step), step)
    return matrix_to_frame(result, target.get("legendFormat"), step)

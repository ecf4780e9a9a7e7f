"""`aipulse demo`: the local stack, a support assistant on real-trace traffic, an incident,
alerts through Alertmanager, a live view, then a summary, charts and dashboard previews.

    aipulse demo [--out DIR] [--speed N] [--seconds S] [--rate R]

Steps: start what is not running (`aipulse up`), point the local Alertmanager's webhook at a
receiver this process runs, replay the trace (arrival times and token counts, sped up) through
:class:`~aipulse_cli.demo.app.SupportAssistant`, follow :func:`~.scenario.timeline`, show
rolling figures read back from ClickHouse, and at the end write PNG charts, one PNG per
provisioned dashboard and the review of the run (``aipulse report``, review.html) into ``--out``.
The simulated app serves the SDK's own metrics (:mod:`aipulse.metrics`) for the local
Prometheus to scrape beside the worker's, so the dashboards' Prometheus panels (the Pipeline
board, the circuit breaker transitions) are drawn from it too.
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import aipulse
import aipulse.metrics
from aipulse_alerts.basic_auth import redact
from aipulse_grafana.prometheus_api import Prometheus, PrometheusError
from aipulse_grafana.render import render_all
from aipulse_local import alertmanager
from aipulse_local import prometheus as local_prometheus
from prometheus_client import CollectorRegistry, start_http_server
from aipulse_local.stack import clickhouse_url, kafka_bootstrap, up
from aipulse_stream.config import Settings
from aipulse_stream.readside.chart import write_demo_charts
from aipulse_stream.readside.metrics_cli import render_table
from aipulse_stream.readside.query import metrics_query
from aipulse_stream.readside.report import build_report
from aipulse_stream.storage.clickhouse import client_for_url

from .app import Conditions, SupportAssistant
from .live import Snapshot, make_view
from .receiver import AlertReceiver
from .scenario import timeline
from .trace import ATTRIBUTION, Trace, TraceMissing, load_trace, thin

DEFAULT_SECONDS = 300.0      # traffic duration (the whole trace hour, compressed)
DEFAULT_RATE = 45.0          # average requests per second kept from the trace
REFRESH_S = 2.0              # live view: how often ClickHouse is read
DRAIN_S = 60.0               # after traffic: wait this long at most for pending notifications
STORE_TIMEOUT_S = 120.0
SERVICE = "support"
STALE_SLACK_S = 5.0          # an alert that began this long before the run still counts as its own


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="output folder (default: $AIPULSE_HOME/demo)")
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="traffic duration in seconds (default 300)")
    p.add_argument("--speed", type=float, default=None,
                   help="trace seconds per wall second (default: the trace hour fits --seconds)")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, help="average requests per second (trace thinned)")
    p.add_argument("--service", default=SERVICE, help="service name of the simulated app")
    p.add_argument("--trace", type=Path, default=None, help="folder with conv.csv and code.csv (default: $AIPULSE_DEMO_TRACE, the shared trace, else the packaged sample)")
    p.add_argument("--no-dashboards", action="store_true", help="skip the dashboard previews at the end")


def _progress_bar(out, label: str):
    """A rich progress bar on a terminal, None otherwise (plain lines are enough in logs)."""
    if not getattr(out, "isatty", lambda: False)():
        return None
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    return Progress(TextColumn(label), BarColumn(), TaskProgressColumn(), transient=True)


class SdkMetricsEndpoint:
    """The simulated app's /metrics (the SDK's counters) on a free 127.0.0.1 port, registered as
    a target of the local Prometheus while the demo runs; :meth:`close` removes both."""

    def __init__(self, settings: Settings, name: str):
        registry = CollectorRegistry()
        aipulse.metrics.register(registry)
        self.server, self._thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.settings, self.name = settings, name
        local_prometheus.add_target(settings, name, self.address)

    def close(self) -> None:
        local_prometheus.remove_target(self.settings, self.name)
        self.server.shutdown()
        self.server.server_close()


def prometheus_for_previews(settings: Settings, say) -> Prometheus | None:
    """AIPULSE_PROMETHEUS_URL's Prometheus, else the local stack's; None (placeholders) when neither answers."""
    url = settings.prometheus_url or local_prometheus.running_url(settings)
    if not url:
        return None
    try:
        return Prometheus.connect(url)
    except PrometheusError as err:
        say(f"  dashboard previews: Prometheus panels not drawn: {err}")
        return None


def read_trace(folder, out) -> Trace:
    bar = _progress_bar(out, "loading the trace")
    if bar is None:
        return load_trace(folder)
    with bar:
        task = bar.add_task("trace", total=1)
        return load_trace(folder, progress=lambda done, total: bar.update(task, total=total, completed=done))


def run_demo(settings: Settings, seconds: float = DEFAULT_SECONDS, speed: float | None = None,
             rate: float = DEFAULT_RATE, out_dir: Path | None = None, service: str = SERVICE,
             trace_dir: Path | None = None, dashboards: bool = True, out=None) -> int:
    out = out or sys.stdout

    def say(msg: str = "") -> None:
        print(msg, file=out, flush=True)

    out_dir = Path(out_dir or settings.state_dir / "demo")
    out_dir.mkdir(parents=True, exist_ok=True)
    trace = read_trace(trace_dir, out)
    duration = float(seconds)
    speed = speed or trace.span_s / duration
    window = [r for r in trace.requests if r.offset_s / speed <= duration]
    keep = min(1.0, rate * duration / max(1, len(window)))
    picked = thin(Trace(window, trace.span_s, trace.origin), keep)
    say(f"traffic: {len(picked)} requests of the real trace ({ATTRIBUTION}), "
        f"{picked[-1].offset_s / 60:.0f} trace minutes at {speed:.1f}x in {duration:.0f} s; "
        "the providers (latency, failures, answers) are simulated")

    receiver = AlertReceiver()
    os.environ["AIPULSE_ALERT_WEBHOOK_URL"] = receiver.url  # a fresh Alertmanager reads it at start
    settings = settings.model_copy(update={"alert_webhook_url": receiver.url})
    say("starting the local stack (Kafka, ClickHouse engine, worker, Alertmanager, Prometheus)...")
    st = up(settings, progress=lambda m: say("  " + m))
    if settings.alertmanager_url:
        say(f"  alerts go to your Alertmanager at {redact(settings.alertmanager_url)}; the demo's receiver sees none")
    elif "alertmanager" in st:
        alertmanager.reload(settings, webhook_url=receiver.url)  # an already running one too
    else:
        say("  no Alertmanager (install prometheus-alertmanager): alerts are read from ClickHouse only")

    client = client_for_url(clickhouse_url(settings))
    base = service
    for run_no in range(2, 100):
        if not still_firing(client, settings, service):
            break
        service = f"{base}-{run_no}"
    if service != base:
        say(f"  alerts of an earlier demo still fire for service '{base}' (they resolve only after their "
            f"resolve_after): this run is service '{service}', so its alerts and rollback are its own")
    aipulse.init(kafka_bootstrap=kafka_bootstrap(settings), service=service, user_salt=secrets.token_hex(16),
                 capture_text=True, max_queue_events=50_000)
    sdk_metrics = None
    if st.get("prometheus", {}).get("healthy"):
        sdk_metrics = SdkMetricsEndpoint(settings, "demo-" + re.sub(r"[^A-Za-z0-9_-]", "_", service))
        say(f"  the app's SDK metrics: http://{sdk_metrics.address}/metrics (scraped by the local Prometheus)")
    cond = Conditions()
    app = SupportAssistant(cond)
    phases = timeline(duration)
    rollbacks: list[tuple[float, str]] = []
    started = time.time()

    def on_notice(n) -> None:  # the canary runbook: roll back at once
        if (n.status == "firing" and n.rule.startswith("canary_") and app.rollout.stage > 0
                and started_since(n, started)):
            app.rollout.set_stage(0)
            rollbacks.append((time.time(), n.rule))
    receiver.on_notice(on_notice)

    def ours() -> list:
        return [n for n in receiver.snapshot() if started_since(n, started)]

    done = threading.Event()
    phase_log: list[tuple[float, str, str]] = []
    failures: list[str] = []

    def traffic() -> None:
        t0 = time.monotonic()
        pending = list(phases)
        try:
            for req in picked:
                due = req.offset_s / speed
                while pending and pending[0].at_s <= due:
                    ph = pending.pop(0)
                    ph.apply(cond, app)
                    cond.phase = ph.name
                    phase_log.append((time.time(), ph.name, ph.says))
                lag = due - (time.monotonic() - t0)
                if lag > 0:
                    time.sleep(lag)
                try:
                    app.handle(req)
                except Exception as err:  # a bug in the simulation must not end the demo silently
                    failures.append(repr(err))
        finally:
            done.set()

    th = threading.Thread(target=traffic, name="demo-traffic", daemon=True)
    th.start()
    view = make_view(out)
    with view:
        while True:
            finished = done.wait(REFRESH_S)
            now = time.time()
            w = settings.window_s
            edge = now // w * w
            rows = metrics_query(client, settings, ["feature"], edge - 60, edge, where={"service": [service]})
            total = metrics_query(client, settings, [], started - w, now + w, where={"service": [service]})
            view.update(Snapshot(now - started, duration, cond.phase, app.rollout.stage, app.breaker.state,
                                 aipulse.stats()["emitted"], rows, total[0] if total else None,
                                 ours(), started))
            if finished:
                break
    ended = time.time()
    aipulse.flush(30)
    stats = aipulse.stats()
    if failures:
        say(f"the simulated app raised {len(failures)} times, first: {failures[0]}")
    say(f"traffic done: {app.handled} requests handled, {stats['sent']} events sent "
        f"({sum(stats['dropped'].values())} dropped); waiting for the worker to store them...")

    deadline = time.monotonic() + STORE_TIMEOUT_S
    while time.monotonic() < deadline:
        total = metrics_query(client, settings, [], started - 60, ended + 60, where={"service": [service]})
        got = total[0]["requests"] + total[0]["late"] if total else 0
        if got >= app.handled:
            break
        time.sleep(1)
    # Resolved notifications of the incident follow the recovery by resolve_after + group_interval.
    drain_until = time.monotonic() + DRAIN_S
    while time.monotonic() < drain_until and _open_alerts(ours()):
        time.sleep(2)
    if sdk_metrics is not None:
        sdk_metrics.close()   # before the SDK closes: its counters would read as a reset to 0
    aipulse.close()

    notices = ours()
    say()
    say(summary(notices, phase_log, rollbacks, started))
    rows = metrics_query(client, settings, ["feature", "model"], started - 60, ended + 60, where={"service": [service]})
    say("\nper feature and model, from ClickHouse:")
    say(render_table(rows, ["feature", "model"]))
    rows = metrics_query(client, settings, ["variant"], started - 60, ended + 60,
                         where={"service": [service], "feature": ["support-chat"]})
    say("\nsupport-chat by rollout arm:")
    say(render_table(rows, ["variant"]))

    marks = [(n.received_at, n.status, n.rule) for n in notices]
    pngs = write_demo_charts(client, settings, service, started, ended, marks, out_dir,
                             phases=[(t, name) for t, name, _ in phase_log])
    say("\ncharts: " + ", ".join(str(p) for p in pngs))
    if dashboards:
        try:
            boards = render_all(client, out_dir / "dashboards", started - 60, ended + 60,
                                database=settings.database, progress_out=out,
                                prometheus=prometheus_for_previews(settings, say))
            say(f"dashboard previews (not Grafana): {len(boards)} PNGs in {out_dir / 'dashboards'}")
        except ImportError as err:
            say(f"dashboard previews skipped: {err}")
    review = out_dir / "review.html"
    t0, t1 = (datetime.fromtimestamp(t, timezone.utc) for t in (started - 60, ended + 60))
    build_report(client, settings, t0, t1, review, where={"service": [service]})
    say(f"monthly review of the demo's range (aipulse report): {review}")
    say()
    say(f"next: aipulse metrics --group-by feature,variant --from -15m --where service={service}")
    say("      aipulse grafana render --out previews --from -15m")
    say(f"      aipulse cost-model --volume 10000/day --from -15m --where service={service}")
    say("the stack keeps running; stop it with: aipulse down")
    receiver.close()
    stored = total[0]["requests"] + total[0]["late"] if total else 0
    return 0 if stored >= app.handled else 1


def still_firing(client, settings: Settings, service: str) -> int:
    """How many alerts of ``service`` are firing now (latest row firing), from the alerts table."""
    return client.query(
        "SELECT count() FROM (SELECT alert_id, argMax(status, at) AS st FROM "
        f"{settings.database}.alerts WHERE service = {{s:String}} GROUP BY alert_id) WHERE st = 'firing'",
        parameters={"s": service}).result_rows[0][0]


def started_since(notice, t: float) -> bool:
    """Whether an alert began in this run: on a warm stack Alertmanager keeps re-sending the
    alerts of an earlier run that still fire (same service), which must not roll back this
    run's canary nor appear in its summary."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", (notice.starts_at or "").replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp() >= t - STALE_SLACK_S
    except ValueError:
        return True


def _open_alerts(notices) -> set:
    state = {}
    for n in notices:
        key = (n.rule, tuple(sorted(n.labels.items())))
        state[key] = n.status
    return {k for k, s in state.items() if s == "firing"}


def summary(notices, phase_log, rollbacks, started: float) -> str:
    lines = ["timeline (seconds since the start):"]
    for t, name, says in phase_log:
        lines.append(f"  +{t - started:5.0f}s  {name:<12} {says}")
    for t, rule in rollbacks:
        lines.append(f"  +{t - started:5.0f}s  rollback     {rule} fired: the demo set the canary stage to 0 (its runbook)")
    lines.append("alerts delivered through Alertmanager to the demo's webhook:")
    if not notices:
        lines.append("  none")
    by: dict = {}
    for n in notices:
        who = ", ".join(f"{k}={n.labels[k]}" for k in ("feature", "model", "variant") if n.labels.get(k))
        by.setdefault((n.rule, who, n.labels.get("severity", "")), []).append(n)
    for (rule, who, sev), ns in sorted(by.items(), key=lambda kv: kv[1][0].received_at):
        fired = [n.received_at - started for n in ns if n.status == "firing"]
        res = [n.received_at - started for n in ns if n.status == "resolved"]
        lines.append(f"  {rule:<24} {sev:<8} {who:<46} fired +{fired[0]:.0f}s" if fired else f"  {rule} {who}")
        lines[-1] += f", resolved +{res[-1]:.0f}s" if res else ", still firing at the end"
    return "\n".join(lines)


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    p = argparse.ArgumentParser(prog="aipulse demo", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv), settings or Settings.from_env())


def run(args, settings: Settings) -> int:
    try:
        return run_demo(settings, seconds=args.seconds, speed=args.speed, rate=args.rate, out_dir=args.out,
                        service=args.service, trace_dir=args.trace, dashboards=not args.no_dashboards)
    except TraceMissing as err:
        print(f"aipulse demo: {err}", file=sys.stderr)
        return 2

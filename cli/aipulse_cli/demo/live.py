"""The demo's terminal view: rich's live table on a terminal, plain progress lines otherwise.

    view = make_view(sys.stdout)      # LiveView on a TTY, PlainView on a pipe or file
    view.update(snapshot)             # every refresh: rolling figures, alerts, phase
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

PLAIN_EVERY_S = 15.0


@dataclass
class Snapshot:
    elapsed_s: float
    duration_s: float
    phase: str
    canary_stage: float
    breaker: str
    sent: int
    rows: list[dict]                    # rolling 1 min, per feature (readside.query rows)
    total: dict | None                  # since the start (one row)
    alerts: list = field(default_factory=list)   # receiver notices
    start_ts: float = 0.0


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def _ms(v):
    return "-" if v is None else f"{v:,.0f}"


def _alert_lines(s: Snapshot) -> list[tuple[str, str]]:
    out = []
    for n in s.alerts[-12:]:
        who = "/".join(n.labels.get(k, "") for k in ("feature", "model", "variant") if n.labels.get(k))
        out.append((n.status, f"+{n.received_at - s.start_ts:5.0f}s  {n.status.upper():8} {n.rule}  {who}"))
    return out


class PlainView:
    def __init__(self, out):
        self.out = out
        self._last = -1e9
        self._seen = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, s: Snapshot) -> None:
        for n in s.alerts[self._seen:]:
            who = "/".join(n.labels.get(k, "") for k in ("feature", "model", "variant") if n.labels.get(k))
            print(f"  alert +{n.received_at - s.start_ts:.0f}s {n.status.upper()} {n.rule} {who}", file=self.out, flush=True)
        self._seen = len(s.alerts)
        if s.elapsed_s - self._last < PLAIN_EVERY_S:
            return
        self._last = s.elapsed_s
        chat = next((r for r in s.rows if r.get("feature") == "support-chat"), None)
        t = s.total or {}
        print(f"  {s.elapsed_s:4.0f}/{s.duration_s:.0f}s  {s.phase:<12} sent {s.sent:>6}  "
              f"chat p95 {_ms(chat and chat['latency_p95_ms'])} p99 {_ms(chat and chat['latency_p99_ms'])} ms  "
              f"fallback {_pct(chat and chat['fallback_rate'])}  errors {_pct(chat and chat['error_rate'])}  "
              f"cost ${t.get('cost_usd') or 0:.2f}  sat {_pct(t.get('satisfaction'))}  "
              f"canary {s.canary_stage:.0f}%  breaker {s.breaker}", file=self.out, flush=True)


class LiveView:
    def __init__(self, out):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def update(self, s: Snapshot) -> None:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        head = Text.assemble(
            ("aipulse demo ", "bold"), (f"{s.elapsed_s:4.0f}/{s.duration_s:.0f}s  ", ""),
            ("phase ", "dim"), (s.phase, "bold yellow" if s.phase == "incident" else "bold green"),
            ("  canary ", "dim"), f"{s.canary_stage:.0f}%", ("  breaker openai/gpt-4o ", "dim"),
            (s.breaker, "bold red" if s.breaker != "closed" else "green"), ("  sent ", "dim"), f"{s.sent}")
        bar = ProgressBar(total=s.duration_s, completed=min(s.elapsed_s, s.duration_s), width=60)
        tab = Table(title="last minute, per feature (from ClickHouse window rows)", expand=False)
        for h in ("feature", "req/s", "P95 ms", "P99 ms", "errors", "fallbacks", "escalations", "cost $", "satisfaction"):
            tab.add_column(h, justify="left" if h == "feature" else "right")
        for r in s.rows:
            tab.add_row(r["feature"], f"{r['requests'] / 60:.1f}", _ms(r["latency_p95_ms"]), _ms(r["latency_p99_ms"]),
                        _pct(r["error_rate"]), _pct(r["fallback_rate"]), _pct(r["escalation_rate"]),
                        f"{r['cost_usd']:.3f}", _pct(r["satisfaction"]))
        t = s.total or {}
        tot = Text(f"since start: {t.get('requests', 0)} requests, cost ${t.get('cost_usd') or 0:.2f}, "
                   f"satisfaction {_pct(t.get('satisfaction'))}, accuracy {_pct(t.get('accuracy'))}")
        alerts = Text()
        for status, line in _alert_lines(s) or [("", "none yet")]:
            alerts.append(line + "\n", style="bold red" if status == "firing" else "green")
        self.live.update(Group(head, bar, tab, tot, Panel(alerts, title="alerts via Alertmanager")))


def make_view(out=None):
    out = out or sys.stdout
    return LiveView(out) if getattr(out, "isatty", lambda: False)() else PlainView(out)


def now() -> float:
    return time.time()

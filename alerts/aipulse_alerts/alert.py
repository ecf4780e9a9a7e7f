"""Alert rendering: a state change of one rule for one group, as labels and annotations.

    alert = render(rule, group={"service": "chat-api", "feature": "chat"}, status="firing",
                   starts_ms=t0, at_ms=t, last=(value, threshold, baseline))
    alert.labels     # alertname, severity, source, the group, the rule's own labels
    alert.alert_id   # stable for (rule, group, start): the firing and its resolved share it

The labels are the same whichever process renders them (no worker or host in them), so
Alertmanager sees one alert per (rule, group) however many workers run.
"""
from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field

from .rules import Rule

SOURCE = "aipulse-stream"


@dataclass
class Alert:
    """One notification: a state change of one rule for one group."""

    rule: str
    status: str                      # "firing" | "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float                 # epoch s
    ends_at: float | None            # epoch s; set when resolved
    value: float | None
    threshold: float | None
    baseline: float | None
    group: dict[str, str] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        """Stable for one alert: rule, group labels and start time."""
        text = repr((self.rule, sorted(self.group.items()), round(self.starts_at, 3)))
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def render(rule: Rule, group: dict, status: str, starts_ms: float, at_ms: float,
           last: tuple | None, source: str = SOURCE) -> Alert:
    """The Alert of a state change; ``last`` = (value, threshold, baseline) at the last breach."""
    value, threshold, baseline = last or (None, None, None)
    labels = {"alertname": rule.name, "severity": rule.severity.value, "source": source}
    labels.update({k: v for k, v in group.items()})
    labels.update(rule.labels)
    subst = collections.defaultdict(str, {k: v for k, v in group.items()})
    subst.update(value=fmt(value), threshold=fmt(threshold), baseline=fmt(baseline),
                 factor=fmt(value / baseline) if value is not None and baseline else "n/a")
    summary = (rule.summary or f"{rule.name}: {rule.metric.value} = {{value}}").format_map(subst)
    annotations = {
        "summary": summary,
        "runbook": rule.runbook,
        "metric": rule.metric.value,
        "value": fmt(value),
        "window": f"{rule.window_s}s",
    }
    if threshold is not None:
        annotations["threshold"] = fmt(threshold)
    if baseline is not None:
        annotations["baseline"] = fmt(baseline)
    if rule.runbook_url:
        annotations["runbook_url"] = rule.runbook_url
    return Alert(
        rule=rule.name, status=status, labels=labels, annotations=annotations,
        starts_at=starts_ms / 1000, ends_at=(at_ms / 1000 if status == "resolved" else None),
        value=value, threshold=threshold, baseline=baseline, group=dict(group),
    )

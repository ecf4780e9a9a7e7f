"""The alert rule file (``alerts/aipulse_alerts/rules.yaml``): its pydantic model and loader.

One file feeds both evaluators: the streaming detector in the workers
(:mod:`aipulse_alerts.detector`) and the generated Grafana alert provisioning (issue 5).
Everything either of them needs is a field here, so neither has to guess::

    >>> from aipulse_alerts.rules import load_rules
    >>> rs = load_rules()                        # alerts/aipulse_alerts/rules.yaml, or $AIPULSE_ALERT_RULES
    >>> r = rs.rule("latency_p99_ceiling")
    >>> r.metric.value, r.group_by, r.comparison, r.window_s, r.severity.value
    ('latency_p99_ms', ['service', 'feature'], '>', 60, 'critical')

A rule says: for every group (the values of ``group_by``) of the rows that match ``where``,
compute ``metric`` over the last ``window``; the rule *breaches* when

- ``metric comparison threshold`` (absolute; ``threshold_overrides`` may set another
  threshold per group, e.g. a ceiling per feature), and/or
- relative to a ``baseline``: ``metric comparison factor * baseline`` and
  ``|metric - baseline| >= min_delta``, the baseline being either the same group's metric
  over a trailing ``baseline.window`` that ends where the evaluation window starts
  (``kind: trailing``) or the same group with ``variant = baseline.variant`` over the same
  window (``kind: variant``: canary against control). When both a threshold and a baseline
  are given, both must hold (the threshold is then a floor that keeps tiny rates quiet);
- and, when ``short_window`` is set, the same condition also holds over that shorter window
  (multi-window burn rates: the long window gives significance, the short one makes the
  alert resolve soon after recovery).

Groups with less than ``min_volume`` (the metric's denominator, see :data:`METRICS`) in the
window never breach. The alert fires once the rule has breached continuously for
``sustain`` and resolves after ``resolve_after`` without a breach (hysteresis); one alert per
rule and group until it resolves.

Durations are written ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` (or plain seconds) and are read
as whole seconds (``window_s``, ``sustain_s``, ...; :func:`format_duration` writes them back).
A mistake in the file fails the load with one message per problem, naming the rule and field
(:class:`RulesError`).
"""
from __future__ import annotations

import math
import os
import re
from enum import Enum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

RULES_ENV = "AIPULSE_ALERT_RULES"
DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "rules.yaml"  # package data: travels with the wheel

# Dimensions of window rows (and of raw interactions, for user_id).
WINDOW_DIMENSIONS = ("service", "feature", "model", "variant")
USER_DIMENSION = "user_id"
Dimension = Literal["service", "feature", "model", "variant", "user_id"]

MONTH_S = 30 * 86400  # a "month" for run-rates: 30 days, as the cost ceiling is monthly
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class RulesError(ValueError):
    """The rule file is unreadable or invalid; the message lists every problem found."""


class Metric(str, Enum):
    """What a rule measures. See :data:`METRICS` for each one's definition and volume."""

    latency_p50_ms = "latency_p50_ms"
    latency_p95_ms = "latency_p95_ms"
    latency_p99_ms = "latency_p99_ms"
    ttft_p95_ms = "ttft_p95_ms"
    error_rate = "error_rate"
    fallback_rate = "fallback_rate"
    escalation_rate = "escalation_rate"
    rejection_rate = "rejection_rate"
    low_confidence_rate = "low_confidence_rate"
    satisfaction = "satisfaction"
    task_completion_rate = "task_completion_rate"
    accuracy = "accuracy"
    shadow_disagreement_rate = "shadow_disagreement_rate"
    error_budget_burn = "error_budget_burn"
    cost_run_rate_usd_month = "cost_run_rate_usd_month"
    user_spend_usd = "user_spend_usd"
    silence_s = "silence_s"
    pipeline_lag_s = "pipeline_lag_s"


class MetricDef(BaseModel):
    """How a metric is computed from the summed columns of window rows (migration 002).

    ``kind``: ``ratio`` = sum(numerator) / sum(denominator); ``quantile`` = the ``q``-quantile
    of the merged sketch in ``buckets``; ``run_rate`` = sum(numerator) scaled from the window
    to a month; ``sum`` = sum(numerator) over the window (per user: from raw interactions);
    ``gauge`` = a time measured by the worker (no window rows). ``volume`` is what
    ``min_volume`` counts (columns summed). ``higher_is_worse`` tells generators which
    comparison is natural.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["ratio", "quantile", "run_rate", "sum", "gauge"]
    numerator: tuple[str, ...] = ()
    denominator: tuple[str, ...] = ()
    buckets: str | None = None
    q: float | None = None
    volume: tuple[str, ...] = ()
    unit: str = ""
    higher_is_worse: bool = True
    description: str = ""


METRICS: dict[Metric, MetricDef] = {
    Metric.latency_p50_ms: MetricDef(kind="quantile", buckets="latency_buckets", q=0.50, volume=("requests",),
                                     unit="ms", description="median latency (merged sketch, 1% accurate)"),
    Metric.latency_p95_ms: MetricDef(kind="quantile", buckets="latency_buckets", q=0.95, volume=("requests",),
                                     unit="ms", description="95th percentile latency"),
    Metric.latency_p99_ms: MetricDef(kind="quantile", buckets="latency_buckets", q=0.99, volume=("requests",),
                                     unit="ms", description="99th percentile latency"),
    Metric.ttft_p95_ms: MetricDef(kind="quantile", buckets="ttft_buckets", q=0.95, volume=("ttft_count",),
                                  unit="ms", description="95th percentile time to first token"),
    Metric.error_rate: MetricDef(kind="ratio", numerator=("errors",), denominator=("requests",),
                                 volume=("requests",), description="errors and timeouts per request"),
    Metric.fallback_rate: MetricDef(kind="ratio", numerator=("fallbacks",), denominator=("requests",),
                                    volume=("requests",), description="requests served by a fallback"),
    Metric.escalation_rate: MetricDef(kind="ratio", numerator=("escalations",), denominator=("requests",),
                                      volume=("requests",), description="requests escalated to a human"),
    Metric.rejection_rate: MetricDef(kind="ratio", numerator=("rejected_input", "rejected_output"),
                                     denominator=("requests",), volume=("requests",),
                                     description="input or output rejected by validation"),
    Metric.low_confidence_rate: MetricDef(kind="ratio", numerator=("low_confidence",), denominator=("requests",),
                                          volume=("requests",), description="answers below the confidence threshold"),
    Metric.satisfaction: MetricDef(kind="ratio", numerator=("feedback_up",),
                                   denominator=("feedback_up", "feedback_down"),
                                   volume=("feedback_up", "feedback_down"), higher_is_worse=False,
                                   description="thumbs up / (up + down)"),
    Metric.task_completion_rate: MetricDef(kind="ratio", numerator=("task_completed",),
                                           denominator=("task_completed", "task_failed"),
                                           volume=("task_completed", "task_failed"), higher_is_worse=False,
                                           description="tasks completed / (completed + failed)"),
    Metric.accuracy: MetricDef(kind="ratio", numerator=("correct",), denominator=("evaluated",),
                               volume=("evaluated",), higher_is_worse=False,
                               description="correct / evaluated against ground truth (not shadow)"),
    Metric.shadow_disagreement_rate: MetricDef(kind="ratio", numerator=("shadow_disagreements",),
                                               denominator=("shadow_pairs",), volume=("shadow_pairs",),
                                               description="shadow candidate disagreeing with production"),
    Metric.error_budget_burn: MetricDef(kind="ratio", numerator=("errors",), denominator=("requests",),
                                        volume=("requests",),
                                        description="error rate / (1 - slo_target): 1 spends the budget "
                                                    "exactly over the SLO period"),
    Metric.cost_run_rate_usd_month: MetricDef(kind="run_rate", numerator=("cost_usd",), volume=("requests",),
                                              unit="USD/month",
                                              description="cost over the window scaled to 30 days"),
    Metric.user_spend_usd: MetricDef(kind="sum", numerator=("cost_usd",), volume=("requests",), unit="USD",
                                     description="one user's spend over the window (top spenders, spend_top_window)"),
    Metric.silence_s: MetricDef(kind="gauge", unit="s",
                                description="seconds since the newest event of the group was seen"),
    Metric.pipeline_lag_s: MetricDef(kind="gauge", unit="s",
                                     description="seconds between an event's time and its processing"),
}


class Severity(str, Enum):
    critical = "critical"   # pages someone
    warning = "warning"     # a ticket / chat message
    info = "info"


def parse_duration(value: object) -> int:
    """``"90s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a number of seconds -> whole seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is text like '30s', '5m', '1h' or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration like '30s', '5m', '1h', '1d'")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} must be a non-negative duration")
    return int(round(seconds))


def format_duration(seconds: int) -> str:
    """Whole seconds to the shortest exact form Grafana and Alertmanager read: 90 -> '90s', 300 -> '5m'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Baseline(_Strict):
    """What a relative rule compares against (see the module doc)."""

    kind: Literal["trailing", "variant"] = "trailing"
    window: str | int | None = Field(None, description="trailing: length of the baseline period, before the window")
    variant: str | None = Field(None, description="variant: the sibling variant compared against, e.g. control")
    factor: float = Field(..., gt=0, description="breach when metric <comparison> factor * baseline")
    min_delta: float = Field(0.0, ge=0, description="and |metric - baseline| >= min_delta")
    min_volume: int | None = Field(None, ge=0, description="volume the baseline needs; default: the rule's")

    @property
    def window_s(self) -> int:
        return parse_duration(self.window) if self.window is not None else 0

    @model_validator(mode="after")
    def _check(self) -> "Baseline":
        if self.kind == "trailing":
            if self.window is None:
                raise ValueError("a trailing baseline needs `window` (e.g. 30m)")
            parse_duration(self.window)
            if self.variant is not None:
                raise ValueError("`variant` is for kind: variant")
        else:
            if not self.variant:
                raise ValueError("a variant baseline needs `variant` (e.g. control)")
            if self.window is not None:
                raise ValueError("a variant baseline uses the rule's window; drop `window`")
        return self


class ThresholdOverride(_Strict):
    """Another threshold for the groups whose labels match (first match wins)."""

    match: dict[Dimension, str]
    threshold: float


class Rule(_Strict):
    """One alert rule. Field docs in the module doc and docs/alerts.md."""

    name: str
    summary: str = ""
    metric: Metric
    group_by: list[Dimension] = Field(default_factory=list)
    where: dict[Dimension, list[str]] = Field(default_factory=dict)
    comparison: Literal[">", ">=", "<", "<="] = ">"
    threshold: float | None = None
    threshold_overrides: list[ThresholdOverride] = Field(default_factory=list)
    baseline: Baseline | None = None
    slo_target: float | None = Field(None, gt=0, lt=1)
    window: str | int
    short_window: str | int | None = None
    sustain: str | int = 0
    resolve_after: str | int = "1m"
    min_volume: int = Field(0, ge=0)
    severity: Severity = Severity.warning
    runbook: str = Field(..., min_length=1)
    runbook_url: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True

    # -- derived, in whole seconds ------------------------------------------------------
    @property
    def window_s(self) -> int:
        return parse_duration(self.window)

    @property
    def short_window_s(self) -> int | None:
        return None if self.short_window is None else parse_duration(self.short_window)

    @property
    def sustain_s(self) -> int:
        return parse_duration(self.sustain)

    @property
    def resolve_after_s(self) -> int:
        return parse_duration(self.resolve_after)

    @property
    def definition(self) -> MetricDef:
        return METRICS[self.metric]

    def threshold_for(self, group: dict[str, str]) -> float | None:
        """The absolute threshold for one group (an override's, else the rule's)."""
        for o in self.threshold_overrides:
            if all(group.get(k) == v for k, v in o.match.items()):
                return o.threshold
        return self.threshold

    def span_s(self) -> int:
        """How much history the rule reads back from an evaluation time."""
        back = self.window_s
        if self.baseline is not None and self.baseline.kind == "trailing":
            back += self.baseline.window_s
        return back

    # -- validation ---------------------------------------------------------------------
    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be lower_snake_case: a-z, 0-9, _ (it becomes the alertname)")
        return v

    @field_validator("window", "short_window", "sustain", "resolve_after")
    @classmethod
    def _duration(cls, v):
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = {"alertname", "severity", "rule", "source"} | set(WINDOW_DIMENSIONS) | {USER_DIMENSION}
        for k in v:
            if not _LABEL.match(k):
                raise ValueError(f"label {k!r} is not a valid Alertmanager label name")
            if k in reserved:
                raise ValueError(f"label {k!r} is set by the detector; pick another name")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Rule":
        d = self.definition
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by lists a dimension twice")
        if self.window_s <= 0:
            raise ValueError("window must be longer than 0s")
        if self.short_window is not None and not 0 < self.short_window_s < self.window_s:
            raise ValueError("short_window must be shorter than window")
        if self.threshold is None and self.baseline is None:
            raise ValueError("give a threshold, a baseline, or both")
        if self.threshold_overrides and self.threshold is None:
            raise ValueError("threshold_overrides need a default threshold")
        if self.metric == Metric.error_budget_burn and self.slo_target is None:
            raise ValueError("error_budget_burn needs slo_target (e.g. 0.999)")
        if self.metric != Metric.error_budget_burn and self.slo_target is not None:
            raise ValueError("slo_target is only for error_budget_burn")
        uses_user = USER_DIMENSION in self.group_by or USER_DIMENSION in self.where
        if self.metric == Metric.user_spend_usd:
            if USER_DIMENSION not in self.group_by:
                raise ValueError("user_spend_usd is per user: add user_id to group_by")
            if self.baseline is not None:
                raise ValueError("user_spend_usd takes an absolute threshold only")
        elif uses_user:
            raise ValueError("user_id is only available to user_spend_usd (window rows carry no user ids)")
        if d.kind == "gauge":
            if self.baseline is not None or self.short_window is not None:
                raise ValueError(f"{self.metric.value} takes an absolute threshold only")
            allowed = {"service"} if self.metric == Metric.silence_s else set()
            if not set(self.group_by) <= allowed or self.where.keys() - allowed:
                raise ValueError(f"{self.metric.value} groups by {sorted(allowed) or 'nothing'} at most")
        if self.baseline is not None and self.baseline.kind == "variant":
            if "variant" not in self.group_by:
                raise ValueError("a variant baseline needs variant in group_by")
        return self


class RuleSet(_Strict):
    """The whole file: ``version: 1`` and a list of rules with unique names."""

    version: Literal[1] = 1
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique(self) -> "RuleSet":
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"rule name {r.name!r} is used twice")
            seen.add(r.name)
        return self

    @property
    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)


def _describe(err: ValidationError, data: object) -> str:
    lines = []
    rules = data.get("rules") if isinstance(data, dict) else None
    for e in err.errors():
        loc = list(e.get("loc", ()))
        where = ".".join(str(p) for p in loc) or "(file)"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and isinstance(rules, list):
            i = loc[1]
            name = rules[i].get("name", "?") if i < len(rules) and isinstance(rules[i], dict) else "?"
            rest = ".".join(str(p) for p in loc[2:]) or "(rule)"
            where = f"rule {name!r} (rules[{i}]) {rest}"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_rules(text: str, source: str = "<text>") -> RuleSet:
    """Validate YAML text; raises :class:`RulesError` listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RulesError(f"{source}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{source}: expected a mapping with `version` and `rules`")
    try:
        return RuleSet.model_validate(data)
    except ValidationError as err:
        raise RulesError(f"{source}: {err.error_count()} problem(s):\n{_describe(err, data)}") from None


def rules_path(path: str | Path | None = None) -> Path:
    """The rule file in use: ``path``, else ``$AIPULSE_ALERT_RULES``, else alerts/aipulse_alerts/rules.yaml."""
    if path is not None:
        return Path(path)
    env = os.environ.get(RULES_ENV, "").strip()
    return Path(env) if env else DEFAULT_RULES_PATH


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate the rule file (see :func:`rules_path`)."""
    p = rules_path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise RulesError(f"cannot read the alert rules at {p}: {err.strerror} (set {RULES_ENV})") from None
    return parse_rules(text, str(p))

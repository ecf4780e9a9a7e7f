"""Lines drawn on panels (SLO target, latency and cost ceilings), read from the rule file.

    Targets.from_rules()   # alerts/aipulse_alerts/rules.yaml (or $AIPULSE_ALERT_RULES)

Why from the rules: the red line on a panel and the alert that pages must be the same number.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Targets:
    slo_target: float = 0.999
    p95_ceiling_ms: float = 3000
    p99_ceiling_ms: float = 5000
    cost_ceiling_usd_month: float = 10000
    baseline_variant: str = "control"

    @classmethod
    def from_rules(cls, path=None) -> "Targets":
        from aipulse_alerts.rules import load_rules

        rules = load_rules(path).enabled
        found = {}
        for r in rules:
            m = r.metric.value
            if m == "error_budget_burn" and r.slo_target:
                found.setdefault("slo_target", r.slo_target)
            elif m == "latency_p95_ms" and r.baseline is None and r.threshold is not None:
                found.setdefault("p95_ceiling_ms", r.threshold)
            elif m == "latency_p99_ms" and r.baseline is None and r.threshold is not None:
                found.setdefault("p99_ceiling_ms", r.threshold)
            elif m == "cost_run_rate_usd_month" and r.threshold is not None:
                found.setdefault("cost_ceiling_usd_month", r.threshold)
            if r.baseline is not None and r.baseline.kind == "variant":
                found.setdefault("baseline_variant", r.baseline.variant)
        return cls(**found)

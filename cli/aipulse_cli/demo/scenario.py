"""The demo's timeline: when the canary widens, when the incident starts and ends.

Phases are fractions of the traffic duration, so a short run (tests) has the same story::

    >>> [p.name for p in timeline(300)]
    ['healthy', 'canary 20 %', 'incident', 'recovery']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .app import Conditions


@dataclass(frozen=True)
class Phase:
    name: str
    at_s: float
    apply: Callable[[Conditions, object], None]
    says: str


def _canary_20(c: Conditions, app) -> None:
    app.rollout.set_stage(20)
    # prompt v2 is worse than baseline: refused more often, slower, answers liked less
    c.canary_error_rate, c.canary_slowdown, c.canary_quality = 0.07, 1.6, -0.3


def _incident(c: Conditions, app) -> None:
    c.primary_slowdown, c.primary_error_rate, c.fallback_error_rate = 3.5, 0.25, 0.06


def _recovery(c: Conditions, app) -> None:
    c.primary_slowdown, c.primary_error_rate, c.fallback_error_rate = 1.0, 0.004, 0.003


def timeline(duration_s: float) -> list[Phase]:
    d = duration_s
    return [
        Phase("healthy", 0.0, lambda c, a: None, "healthy traffic; prompt-v2 canary at 5 %"),
        Phase("canary 20 %", 0.2 * d, _canary_20, "canary raised to 20 % (prompt v2 is worse than baseline)"),
        Phase("incident", 0.3 * d, _incident, "gpt-4o slows down 3.5x and fails 25 %: fallbacks surge"),
        Phase("recovery", 0.55 * d, _recovery, "gpt-4o healthy again"),
    ]

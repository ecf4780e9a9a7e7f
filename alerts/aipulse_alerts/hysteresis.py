"""Hysteresis: when a breaching rule fires, when a firing one resolves, per (rule, group).

    h = Hysteresis()
    changes = h.step(rule, results, t_ms)   # results: group -> (breach, value, threshold, baseline, labels)
    for group, status, state in changes: ...   # status "firing" | "resolved"

The alert fires when the rule has breached at every evaluation for ``sustain`` (one breaching
evaluation when sustain is 0) and resolves after ``resolve_after`` with no breach. While it
fires its trailing baseline is frozen at the value it had when it fired (``frozen_baseline``),
so a long incident does not become the new normal. A group missing from ``results`` is not
judged at all: its state is held (that is how a stalled input holds instead of resolving).
"""
from __future__ import annotations

from dataclasses import dataclass

from .rules import Rule


@dataclass
class State:
    pending_since: float | None = None   # first evaluation of the current breach streak (ms)
    firing_since: float | None = None    # ms
    last_breach: float | None = None     # ms
    frozen_baseline: float | None = None
    last: tuple | None = None            # (value, threshold, baseline) at the last breach


class Hysteresis:
    def __init__(self):
        self.states: dict[tuple[str, tuple], State] = {}

    def groups(self, rule_name: str) -> set[tuple]:
        """Groups of the rule with a state (pending or firing): judged even without data."""
        return {g for (name, g) in self.states if name == rule_name}

    def get(self, rule_name: str, g: tuple) -> State | None:
        return self.states.get((rule_name, g))

    def restore(self, rule_name: str, g: tuple, firing_since_ms: float, now_ms: float,
                last: tuple | None) -> State:
        """A firing alert taken over from the store: it resolves only after a full quiet period."""
        st = self.states[(rule_name, g)] = State(pending_since=firing_since_ms, firing_since=firing_since_ms,
                                                 last_breach=now_ms, frozen_baseline=(last or (None,) * 3)[2],
                                                 last=last)
        return st

    def step(self, rule: Rule, results: dict[tuple, tuple], t: int) -> list[tuple[dict, str, State]]:
        out = []
        for g, (breach, value, threshold, baseline, group) in results.items():
            key = (rule.name, g)
            st = self.states.get(key)
            if st is None:
                if not breach:
                    continue
                st = self.states[key] = State()
            if st.firing_since is None:
                if not breach:
                    del self.states[key]
                    continue
                if st.pending_since is None:
                    st.pending_since = t
                st.last_breach = t
                st.last = (value, threshold, baseline)
                if (t - st.pending_since) >= rule.sustain_s * 1000:
                    st.firing_since = t
                    st.frozen_baseline = baseline
                    out.append((group, "firing", st))
            else:
                if breach:
                    st.last_breach = t
                    st.last = (value, threshold, baseline)
                elif t - st.last_breach >= rule.resolve_after_s * 1000:
                    out.append((group, "resolved", st))
                    del self.states[key]
        return out

    def firing(self) -> list[tuple[str, tuple]]:
        return [k for k, st in self.states.items() if st.firing_since is not None]

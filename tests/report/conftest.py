"""Fixtures of the review and cost-model tests: one database on the real local ClickHouse
endpoint, created by the project's migrations and seeded once by the Grafana tests' seed
helpers (events aggregated by the worker's own WindowAggregator, raw rows as the sink writes
them), plus alert rows the way the detector's ClickHouse sink writes them.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "grafana"))

from seed import Knobs, generate, interactions, store  # noqa: E402  (tests/grafana/seed.py)

from aipulse.contract import Feedback  # noqa: E402

SEED_START = datetime(2026, 11, 3, 9, 40, tzinfo=timezone.utc)   # crosses whole hours: rollups are read
SEED_END = SEED_START + timedelta(minutes=100)


@dataclass
class Seeded:
    db: str
    start: datetime
    end: datetime
    events: list
    alerts: list

    def env(self) -> dict:
        return {**os.environ, "AIPULSE_DATABASE": self.db}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Runs the real `aipulse` command on the seeded database."""
        return subprocess.run([sys.executable, "-m", "aipulse_cli", *args], capture_output=True,
                              text=True, env=self.env(), timeout=120)


def _knobs(t: float, variant: str) -> Knobs:
    incident = SEED_START.timestamp() + 3600 < t < SEED_START.timestamp() + 4800
    return Knobs(error_p=0.01 if variant == "candidate" else 0.002, fallback_p=0.15 if incident else 0.02,
                 up_p=0.6 if incident else 0.85, whale_cost=0.02, feedback_p=0.3, eval_p=0.2)


def _alert(rule: str, status: str, feature: str, variant: str, starts: datetime, at: datetime, severity: str) -> dict:
    return {"alert_id": f"{rule}-{feature}-{starts:%H%M}", "rule": rule, "status": status, "severity": severity,
            "service": "svc", "feature": feature, "model": "", "variant": variant, "group_key": "{}", "labels": {},
            "summary": f"{rule} on {feature}", "runbook": "", "value": 0.05, "threshold": 0.02, "baseline": None,
            "starts_at": starts, "ends_at": at if status == "resolved" else None, "at": at}


@pytest.fixture(scope="session")
def seeded(clickhouse_url):
    from aipulse_stream.config import Settings
    from aipulse_stream.storage.clickhouse import client_for_url
    from aipulse_stream.storage.migrations import migrate

    client = client_for_url(clickhouse_url)
    db = f"report_test_{uuid.uuid4().hex[:6]}"
    migrate(client, Settings(database=db))
    rng = random.Random(14)
    events = generate(rng, "svc", SEED_START, SEED_END, rate=lambda t: 1.0, knobs=_knobs,
                      features=("chat", "search"), models=("m1", "m2"))
    # human corrections on some thumbs-down (the seed writes thumbs only)
    downs = [e for e in events if isinstance(e, Feedback) and e.feedback_type == "thumbs_down"]
    events += [Feedback(event_id=f"{d.event_id}-c", interaction_id=d.interaction_id, service="svc",
                        ts=d.ts + timedelta(seconds=1), feedback_type="human_correction", correction="fixed answer")
               for d in downs[::4]]
    # a shadow candidate beside some calls: its window rows carry no user requests (the review
    # shows them, the cost model must not divide by their zero requests)
    events += [i.model_copy(update={"event_id": f"{i.event_id}-sh", "interaction_id": f"{i.event_id}-sh",
                                    "model": "cand", "shadow": True, "shadow_of": i.interaction_id})
               for i in interactions(events)[::50]]
    store(client, db, events)
    t = SEED_START + timedelta(minutes=62)
    alerts = [_alert("canary_error_rate", "firing", "chat", "candidate", t, t, "warning"),
              _alert("canary_error_rate", "resolved", "chat", "candidate", t, t + timedelta(minutes=9), "warning"),
              _alert("fallback_rate_surge", "firing", "search", "", t, t + timedelta(minutes=1), "critical")]
    cols = list(alerts[0])
    client.insert(f"{db}.alerts", [[a[c] for c in cols] for a in alerts], column_names=cols)
    yield Seeded(db, SEED_START, SEED_END, events, alerts)
    client.command(f"DROP DATABASE IF EXISTS {db}")
    client.close()


"""`aipulse cost-model` on the real local stack: at the observed volume the projection is the
observed cost; shares, the P95 and the interval agree with the seeded events."""
from __future__ import annotations

import json
import math

import pytest
from seed import interactions as interactions_of  # tests/grafana/seed.py (conftest puts it on the path)

from aipulse_stream.readside.cost_model import CostModelError, parse_volume

pytestmark = pytest.mark.integration


def _iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


def cost_model(seeded, *args):
    res = seeded.cli("cost-model", "--json", "--from", _iso(seeded.start), "--to", _iso(seeded.end), *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def observed(seeded, *where):
    res = seeded.cli("metrics", "--json", "--from", _iso(seeded.start), "--to", _iso(seeded.end), *where)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)[0]


def test_projection_at_observed_volume_is_observed_cost(seeded):
    m = observed(seeded)
    days = (seeded.end - seeded.start).total_seconds() / 86400
    volume = m["requests"] / days
    p = cost_model(seeded, "--volume", f"{volume!r}/day")
    assert p["observed_requests"] == m["requests"]
    assert p["projected_daily_usd"] * days == pytest.approx(m["cost_usd"], rel=1e-9)
    assert p["projected_monthly_usd"] == pytest.approx(30 * m["cost_usd"] / days, rel=1e-9)
    lo, hi = p["projected_daily_interval_usd"]
    assert lo < p["projected_daily_usd"] < hi
    assert sum(r["projected_daily_usd"] for r in p["models"]) == pytest.approx(p["projected_daily_usd"], rel=1e-9)
    assert sum(r["request_share"] for r in p["models"]) == pytest.approx(1)
    assert "cand" not in {r["model"] for r in p["models"]}  # the shadow candidate: no user traffic
    # the P95 and spread of the per-request cost, from the seeded events themselves
    costs = sorted(i.cost_usd for i in interactions_of(seeded.events))
    exact_p95 = costs[math.floor(0.95 * (len(costs) - 1))]
    assert p["p95_cost_per_request_usd"] == pytest.approx(exact_p95, rel=1e-6, abs=1e-12)
    mean = sum(costs) / len(costs)
    sd = math.sqrt(sum((c - mean) ** 2 for c in costs) / (len(costs) - 1))
    assert p["cost_per_request_sd_usd"] == pytest.approx(sd, rel=1e-6)


def test_feature_scope_ceiling_and_text(seeded):
    m = observed(seeded, "--where", "feature=chat")
    p = cost_model(seeded, "--volume", "10000/day", "--feature", "chat", "--ceiling", "1")
    assert {r["feature"] for r in p["models"]} == {"chat"}
    assert p["cost_per_request_usd"] == pytest.approx(m["cost_usd"] / m["requests"], rel=1e-12)
    assert p["projected_daily_usd"] == pytest.approx(10000 * m["cost_usd"] / m["requests"], rel=1e-12)
    assert p["over_ceiling"] is (p["projected_monthly_usd"] > 1)
    assert p["max_volume_per_day_under_ceiling"] * 30 * p["cost_per_request_usd"] == pytest.approx(1)
    text = seeded.cli("cost-model", "--volume", "10000/day", "--from", _iso(seeded.start), "--to", _iso(seeded.end))
    assert text.returncode == 0 and "monthly" in text.stdout and "ceiling" in text.stdout  # rules.yaml ceiling


def test_bad_volume_is_one_clear_line(seeded):
    res = seeded.cli("cost-model", "--volume", "lots")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "N/day" in res.stderr
    with pytest.raises(CostModelError):
        parse_volume("10/fortnight")
    assert parse_volume("12/s") == 12 * 86400

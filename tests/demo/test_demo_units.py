"""Pure parts of the demo and the dashboard preview (no stack)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aipulse_grafana.render import complete_buckets, fmt_value, interval_for, long_to_series, threshold_color
from aipulse_cli.demo.scenario import timeline
from aipulse_cli.demo.trace import ATTRIBUTION, PACKAGED_DIR, TraceMissing, default_dir, load_trace, thin


def test_trace_loads_sorted_with_attribution_kept(tmp_path):
    (tmp_path / "conv.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                      "2023-11-16 18:15:50.0000000,10,2\n2023-11-16 18:15:46.5000000,5,1\n")
    (tmp_path / "code.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:48.0000000,7,3\n")
    t = load_trace(tmp_path)
    assert [r.source for r in t.requests] == ["conv", "code", "conv"]
    assert t.requests[0].offset_s == 0 and t.span_s == pytest.approx(3.5)
    assert len(thin(t, 0.5)) == 2


def test_packaged_sample_is_every_second_request_with_its_licence(monkeypatch):
    # The full shared trace, when present, is the reference: the sample keeps its rows 2, 4, ...
    full = default_dir()
    sample = load_trace(PACKAGED_DIR)
    assert len(sample.requests) > 10_000, "the sample must hold the default demo's 45 req/s for 300 s"
    readme = (PACKAGED_DIR / "README.md").read_text()
    assert "CC-BY 4.0" in readme and "Splitwise" in readme and "Patel" in ATTRIBUTION
    if full is not None and full != PACKAGED_DIR:
        for name in ("conv", "code"):
            rows = (full / f"{name}.csv").read_text().splitlines()
            assert (PACKAGED_DIR / f"{name}.csv").read_text().splitlines() == [rows[0], *rows[1::2]]
    # With no env and no shared copy beside the package, the sample is the default.
    monkeypatch.delenv("AIPULSE_DEMO_TRACE", raising=False)
    monkeypatch.setattr("aipulse_cli.demo.trace.SHARED_REL", Path("no-such-folder"))
    assert default_dir() == PACKAGED_DIR


def test_missing_trace_says_what_to_do(tmp_path):
    with pytest.raises(TraceMissing, match="conv.csv"):
        load_trace(tmp_path)


def test_timeline_orders_the_story():
    ph = timeline(300)
    assert [p.name for p in ph] == ["healthy", "canary 20 %", "incident", "recovery"]
    assert [p.at_s for p in ph] == sorted(p.at_s for p in ph)


def test_units_thresholds_and_long_frames():
    assert fmt_value(0.9893, "percentunit") == "98.93%"
    assert fmt_value(44.75, "currencyUSD") == "$44.75"
    assert threshold_color(6000, [{"color": "green", "value": None}, {"color": "red", "value": 5000}]) == "#c4162a"
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    s = long_to_series(["time", "feature", "p95"], [[t0, "a", 1.0], [t0, "b", 2.0], [t0 + timedelta(seconds=10), "a", None]])
    assert set(s) == {"a", "b"} and len(s["a"][0]) == 2
    assert interval_for(t0, t0 + timedelta(hours=1)) == 10
    assert interval_for(t0, t0 + timedelta(days=7)) == 1800


def test_alerts_of_an_earlier_run_are_not_this_runs():
    from types import SimpleNamespace

    from aipulse_cli.demo.run import started_since

    t = datetime(2026, 12, 2, 13, 12, 1, tzinfo=timezone.utc).timestamp()
    n = SimpleNamespace(starts_at="2026-12-02T13:12:01.123456789Z")  # Alertmanager's nanoseconds
    assert started_since(n, t) and not started_since(n, t + 60)


def test_buckets_the_range_cuts_are_not_drawn():
    """The last bucket, still filling at `end`, would draw a false drop in a count or a cost."""
    start = datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone.utc)  # cuts the 12:00:00 bucket
    end = datetime(2024, 5, 1, 12, 1, 45, tzinfo=timezone.utc)   # cuts the 12:01:30 bucket
    xs = [datetime(2024, 5, 1, 12, 0, s, tzinfo=timezone.utc) for s in (0, 30)] + [
        datetime(2024, 5, 1, 12, 1, s, tzinfo=timezone.utc) for s in (0, 30)]
    kept = complete_buckets({"requests": (xs, [100.0, 100.0, 100.0, 40.0]), "empty": (xs[:1], [5.0])},
                            start, end, 30)
    assert kept == {"requests": (xs[1:3], [100.0, 100.0])}


def test_previews_draw_the_json_grafana_is_provisioned_with():
    """A plain install has no exported files: the preview builds the boards from the same code."""
    from aipulse_grafana.provisioning import build_files
    from aipulse_grafana.render import load_boards

    exported = {path: json.loads(text) for path, text in build_files(webhook=False, slack=False).items()
                if path.startswith("dashboards/json/")}
    built = load_boards()
    assert len(built) == len(exported) >= 7
    for uid, board in built:
        assert board == exported[f"dashboards/json/{uid}.json"]

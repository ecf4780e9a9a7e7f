"""`aipulse report` on the real local stack: its numbers equal `aipulse metrics` for the same
range, its edge cases and alerts are the seeded ones, and headless Chromium shows it whole."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from datetime import datetime

import pytest
from seed import interactions as interactions_of  # tests/grafana/seed.py (conftest puts it on the path)

from aipulse.contract import Feedback
from aipulse_stream.readside.query import FIGURES

pytestmark = pytest.mark.integration


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def report_data(html_text: str) -> dict:
    m = re.search(r'<script type="application/json" id="aipulse-report-data">(.*?)</script>', html_text, re.S)
    assert m, "the report embeds its figures as JSON"
    return json.loads(m.group(1).replace("<\\/", "</"))


def metrics_json(seeded, group_by: str, start: str, end: str) -> list[dict]:
    res = seeded.cli("metrics", "--json", "--from", start, "--to", end, *(["--group-by", group_by] if group_by else []))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def same_figures(report_rows, metric_rows, dims):
    key = lambda r: tuple(r[d] for d in dims)  # noqa: E731
    assert sorted(map(key, report_rows)) == sorted(map(key, metric_rows))
    by = {key(r): r for r in metric_rows}
    for r in report_rows:
        for f in FIGURES:
            want = by[key(r)][f]
            assert (r[f] is None) if want is None else r[f] == pytest.approx(want, rel=1e-12, abs=0), (key(r), f)


@pytest.fixture(scope="module")
def built(seeded, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "review.html"
    res = seeded.cli("report", "--from", _iso(seeded.start), "--to", _iso(seeded.end), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "requests" in res.stdout
    return out, out.read_text()


def test_report_numbers_equal_aipulse_metrics(seeded, built):
    _, text = built
    data = report_data(text)
    a, b = _iso(seeded.start), _iso(seeded.end)
    same_figures(data["total"], metrics_json(seeded, "", a, b), [])
    same_figures(data["by_feature_model"], metrics_json(seeded, "feature,model", a, b), ["feature", "model"])
    arms = [r for rs in data["rollouts"].values() for r in rs]
    same_figures(arms, metrics_json(seeded, "feature,variant", a, b), ["feature", "variant"])
    for bucket in (data["trend"][0], data["trend"][-1]):  # first bucket and the partial last one
        same_figures(bucket["rows"], metrics_json(seeded, "feature,model", bucket["from"], bucket["to"]),
                     ["feature", "model"])
    # and the table a reader sees shows those numbers
    for r in data["by_feature_model"]:
        assert f"<td>{r['requests']:,}</td>" in text
    assert any(r["model"] == "cand" and r["requests"] == 0 for r in data["by_feature_model"])  # the shadow rows
    # independent oracle: the seeded interactions
    n = len(interactions_of(seeded.events))
    assert data["total"][0]["requests"] == n


def test_report_edge_cases_and_alerts_are_the_seeded_ones(seeded, built):
    data = report_data(built[1])
    down = Counter(e.interaction_id for e in seeded.events
                   if isinstance(e, Feedback) and e.feedback_type == "thumbs_down")
    corr = Counter(e.interaction_id for e in seeded.events
                   if isinstance(e, Feedback) and e.feedback_type == "human_correction")
    worst: dict[str, int] = {}
    for i in interactions_of(seeded.events):
        s = down[i.interaction_id] + 2 * corr[i.interaction_id] + i.fallback_depth + (i.outcome == "error")
        worst[i.feature] = max(worst.get(i.feature, 0), s)
    first = {}
    for e in data["edge_cases"]:
        first.setdefault(e["feature"], e)
        assert e["prompt"] is None  # the seed captures no text: shown as "capture off"
    assert {f: e["score"] for f, e in first.items()} == worst
    assert "(text capture off)" in built[1]
    assert sorted((a["rule"], a["status"]) for a in data["alerts"]) == [
        ("canary_error_rate", "resolved"), ("fallback_rate_surge", "firing")]
    assert "canary alert" in built[1] and "still firing" in built[1]
    assert set(data["rollouts"]) == {"chat", "search"}
    for arm in data["rollouts"]["chat"]:
        lo, hi = arm["error_rate_ci"]
        assert lo <= arm["error_rate"] <= hi


CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const _err = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); _err(...a); };
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const m = document.createElement('pre'); m.id = 'aipulse-check';
  m.textContent = `images=${ok}/${imgs.length} errors=${window.__errors.length} ` + window.__errors.join('|');
  document.body.appendChild(m);
});
</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("Debian's chromium is needed: run scripts/install-system-deps.sh")
    return exe


def test_report_opens_in_headless_chromium(built, tmp_path):
    path, text = built
    exe = _chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("<head>", "<head>" + CHECK, 1))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--enable-logging=stderr"]
    res = subprocess.run([exe, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="aipulse-check">images=(\d+)/(\d+) errors=(\d+)(.*?)</pre>', res.stdout, re.S)
    assert m, f"the page did not load: {res.stderr[-800:]}"
    ok, total, errors = int(m.group(1)), int(m.group(2)), int(m.group(3))
    assert total == text.count('<img ') and total >= 6
    assert ok == total, f"{total - ok} images did not load"
    assert errors == 0, m.group(4)
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln and probe.name in ln]
    assert not console, console
    shot = path.with_suffix(".png")
    subprocess.run([exe, *flags, "--window-size=1280,5200", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.stat().st_size > 50_000
    print(f"\nscreenshot: {shot}")


def test_report_bad_arguments_are_one_clear_line(seeded, tmp_path):
    res = seeded.cli("report", "--from", "now", "--to", "-1h", "--out", str(tmp_path / "r.html"))
    assert res.returncode == 2 and "must be after --from" in res.stderr and res.stderr.count("\n") == 1
    res = seeded.cli("report", "--from", "-1h", "--out", str(tmp_path / "r.pdf"))
    assert res.returncode == 2 and "must end in .html" in res.stderr

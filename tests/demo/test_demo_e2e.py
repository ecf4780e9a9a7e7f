"""A short `aipulse demo` on the real local stack (SDK -> Kafka -> worker -> ClickHouse), then
every provisioned dashboard rendered on its range: every ClickHouse panel draws data, and the
review (review.html) and the charts are written. About two minutes (45 s of traffic, the
store wait and the alert drain)."""
from __future__ import annotations

import io
import os
import time
import uuid

import pytest

from aipulse_grafana.render import render_all
from aipulse_local import alertmanager
from aipulse_local.stack import status
from aipulse_cli.demo import run_demo

pytestmark = pytest.mark.integration

DEMO_SECONDS = 45
DEMO_RATE = 30.0


@pytest.fixture
def restore_alert_webhook(stack_settings):
    """The demo points the shared Alertmanager at its own receiver: point it back afterwards."""
    before = os.environ.get("AIPULSE_ALERT_WEBHOOK_URL")
    yield
    if before is None:
        os.environ.pop("AIPULSE_ALERT_WEBHOOK_URL", None)
    else:
        os.environ["AIPULSE_ALERT_WEBHOOK_URL"] = before
    if "alertmanager" in status(stack_settings):
        alertmanager.reload(stack_settings, webhook_url=before)


def test_short_demo_draws_every_panel(stack, stack_settings, ch, tmp_path, restore_alert_webhook):
    service = f"demo-{uuid.uuid4().hex[:6]}"
    out = io.StringIO()
    t0 = time.time()
    rc = run_demo(stack_settings, seconds=DEMO_SECONDS, rate=DEMO_RATE, out_dir=tmp_path, service=service,
                  dashboards=False, out=out)
    t1 = time.time()
    log = out.getvalue()
    assert rc == 0, log[-2000:]
    for name in ("demo-p99.png", "demo-fallback.png", "demo-cost.png", "demo-satisfaction.png", "review.html"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    drawn: dict[str, dict] = {}
    render_all(ch, tmp_path / "dashboards", t0 - 60, t1 + 5, database=stack_settings.database,
               on_board=lambda stem, d: drawn.__setitem__(stem, d))
    n_alerts = ch.query(f"SELECT count() FROM {stack_settings.database}.alerts "
                        "WHERE at >= toDateTime64({a:Float64}, 3, 'UTC')", parameters={"a": t0}).result_rows[0][0]
    empty = {f"{board}: {title}" for board, panels in drawn.items() for title, n in panels.items()
             if n == 0 and not (title.startswith("Firing alerts") and n_alerts == 0)}
    assert not empty, f"panels with no data on the demo's traffic: {sorted(empty)}"
    assert sum(1 for panels in drawn.values() for n in panels.values() if n) >= 40

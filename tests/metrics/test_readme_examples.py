"""The query examples of README.md and docs/metrics.md run on the real engine and give what
the read side gives: each column named after a catalog figure equals metrics_query's value.

(Here rather than in tests/catalog/: one process may own one chDB folder, and this one is
the metrics tests' shared engine.)"""
from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aipulse.contract import Interaction
from aipulse_catalog.figures import FIGURES
from aipulse_stream.readside.query import metrics_query
from aipulse_stream.transforms.windows import WindowAggregator

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "metrics.md"]


def sql_examples() -> list[tuple[str, str]]:
    out = []
    for p in DOCS:
        for block in re.findall(r"```sql\n(.*?)```", p.read_text(), re.S):
            if "metrics_window" in block:
                out.append((p.name, block.strip().rstrip(";")))
    return out


def _seed(client, settings) -> None:
    rng = random.Random(5)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    agg = WindowAggregator(settings, "t")
    for i in range(600):
        agg.add(0, i, Interaction(
            event_id=f"e{i}", ts=now + timedelta(milliseconds=50 * i), service="support",
            feature=rng.choice(["chat", "search"]), model="m", latency_ms=rng.lognormvariate(5, 1),
            outcome="error" if rng.random() < 0.1 else "ok", input_tokens=10, output_tokens=5))
    rows = agg.drain_rows()
    cols = list(rows[0])
    client.insert(f"{settings.database}.metrics_window", [[r[c] for c in cols] for r in rows], column_names=cols)


def test_there_are_examples_to_check():
    assert len(sql_examples()) >= 3


def test_examples_run_and_agree_with_the_read_side(ch):
    client, settings = ch
    _seed(client, settings)
    now = datetime.now(timezone.utc)
    want = {r["feature"]: r for r in metrics_query(client, settings, ["feature"], now - timedelta(hours=1),
                                                    now + timedelta(hours=1))}
    assert set(want) == {"chat", "search"}
    for source, sql in sql_examples():
        res = client.query(sql.replace("aipulse.", f"{settings.database}."))
        assert res.result_rows, f"{source}: no rows from\n{sql}"
        names = res.column_names
        if "feature" not in names:
            continue  # an ungrouped alternative: checked to run only
        for row in res.result_rows:
            got = dict(zip(names, row))
            ref = want[got["feature"]]
            for name, value in got.items():
                if name == "feature":
                    continue
                assert name in FIGURES, f"{source}: column {name!r} is not a catalog figure name"
                # the same sums and the same quantile function: equal up to float rounding
                assert abs(value - ref[name]) <= 1e-9 * max(1.0, abs(ref[name])), (source, name, value, ref[name])

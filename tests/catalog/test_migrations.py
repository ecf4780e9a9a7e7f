"""The migrations agree with the catalog: 002's metrics_window columns and both rollup views
(every catalog column of 002, with its type and its merge), and 007 is exactly what the
catalog renders. A column added to the catalog without its migration fails here."""
from __future__ import annotations

import re

from aipulse_catalog.columns import WINDOW_COLUMNS
from aipulse_catalog.render import GRAINS, column_migration
from aipulse_stream.storage.migrations import MIGRATIONS_DIR

M002 = (MIGRATIONS_DIR / "002_metrics.sql").read_text()


def _table_columns(sql: str) -> dict[str, str]:
    body = re.search(r"CREATE TABLE IF NOT EXISTS \{db\}\.metrics_window\n\((.*?)\n\)\nENGINE", sql, re.S).group(1)
    cols = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        name, _, ch_type = line.strip().rstrip(",").partition(" ")
        cols[name] = ch_type.split(" DEFAULT ")[0]
    return cols


def _view_exprs(sql: str, grain: str) -> dict[str, str]:
    """alias -> merge expression of one rollup view's SELECT."""
    m = re.search(rf"CREATE MATERIALIZED VIEW IF NOT EXISTS \{{db\}}\.metrics_{grain}_mv .*?SELECT(.*?)\nFROM", sql, re.S)
    assert m, f"no metrics_{grain}_mv"
    text = " ".join(m.group(1).split())
    return {a: e.strip() for e, a in re.findall(r"((?:[\w]+\()*[\w]+\)*|\w+)\s+AS\s+(\w+)", text)}


def test_002_metrics_window_has_every_002_catalog_column_with_its_type():
    cols = _table_columns(M002)
    for c in WINDOW_COLUMNS:
        if c.added_in <= 2:
            assert cols.get(c.name) == c.ch_type, f"{c.name}: 002 has {cols.get(c.name)!r}, catalog {c.ch_type!r}"
    known = {c.name for c in WINDOW_COLUMNS} | {"service", "feature", "model", "variant", "window_start", "topic",
                                                 "partition", "block", "version", "window_s", "written_at"}
    assert set(cols) <= known, f"002 columns not in the catalog: {sorted(set(cols) - known)}"


def test_002_rollup_views_merge_each_column_as_the_catalog_says():
    for grain in GRAINS:
        exprs = _view_exprs(M002, grain)
        for c in WINDOW_COLUMNS:
            if c.added_in <= 2:
                assert exprs.get(c.name) == c.merge_sql(), f"metrics_{grain}_mv {c.name}: {exprs.get(c.name)!r}"


def test_parser_sees_a_wrong_merge():
    wrong = M002.replace("sum(late) AS late", "max(late) AS late")
    assert _view_exprs(wrong, "hourly")["late"] == "max(late)"


def test_007_is_what_the_catalog_renders():
    assert (MIGRATIONS_DIR / "007_unpriced.sql").read_text() == column_migration(7)


def test_every_catalog_column_has_its_migration():
    files = {int(p.name[:3]) for p in MIGRATIONS_DIR.glob("*.sql")}
    for c in WINDOW_COLUMNS:
        assert c.added_in in files, f"{c.name}: no migration {c.added_in:03d} (python -m aipulse_catalog.render migration {c.added_in})"
        if c.added_in > 2:
            text = next(MIGRATIONS_DIR.glob(f"{c.added_in:03d}_*.sql")).read_text()
            assert text == column_migration(c.added_in), f"{c.added_in:03d} differs from the catalog's rendering"

"""docs/metrics.md carries the catalog's tables exactly as the catalog renders them."""
from __future__ import annotations

from pathlib import Path

from aipulse_catalog.columns import WINDOW_COLUMNS
from aipulse_catalog.figures import FIGURES
from aipulse_catalog.render import DOCS_BEGIN, DOCS_END, docs_tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_metrics_md_tables_equal_the_catalog():
    text = DOC.read_text()
    begin, end = text.index(DOCS_BEGIN), text.index(DOCS_END) + len(DOCS_END) + 1
    assert text[begin:end] == docs_tables(), "regenerate: python -m aipulse_catalog.render docs"


def test_tables_name_every_column_and_figure():
    tables = docs_tables()
    for name in [c.name for c in WINDOW_COLUMNS] + list(FIGURES):
        assert f"| {name} |" in tables, name

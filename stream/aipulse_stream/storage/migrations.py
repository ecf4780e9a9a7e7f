"""Versioned, idempotent schema migrations for the ``aipulse`` database.

Migrations are the numbered ``.sql`` files in ``migrations/`` (``001_raw_events.sql``, ...),
applied in order. Each file's statements are written to be re-runnable (``IF NOT EXISTS``),
and a ``schema_migrations`` table records what was applied, so ``aipulse migrate`` and the
worker's start-up can both run them at any time::

    >>> from aipulse_stream.storage.migrations import migrate   # doctest: +SKIP
    >>> migrate(client, settings)                                # doctest: +SKIP
    ['001_raw_events', '002_metrics']

Placeholders ``{db}``, ``{raw_ttl_days}`` and ``{metrics_ttl_days}`` are filled from Settings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _split(sql: str) -> list[str]:
    """Split on ';' at line ends; strip comment-only chunks (no ';' inside string literals here)."""
    out = []
    for chunk in re.split(r";\s*\n", sql + "\n"):
        lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
        stmt = "\n".join(lines).strip().rstrip(";").strip()
        if stmt:
            out.append(stmt)
    return out


def load(settings: Settings) -> list[Migration]:
    params = {
        "db": settings.database,
        "raw_ttl_days": settings.raw_ttl_days,
        "metrics_ttl_days": settings.metrics_ttl_days,
    }
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name {path.name!r} is not NNN_name.sql")
        text = path.read_text()
        for key, value in params.items():
            text = text.replace("{" + key + "}", str(value))
        found.append(Migration(int(m.group(1)), path.stem, tuple(_split(text))))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number: {versions}")
    return found


def migrate(client, settings: Settings) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db = settings.database
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows}
    applied = []
    for mig in load(settings):
        if mig.version in done:
            continue
        for stmt in mig.statements:
            client.command(stmt)
        client.insert(f"{db}.schema_migrations", [[mig.version, mig.name]], column_names=["version", "name"])
        applied.append(mig.name)
    return applied

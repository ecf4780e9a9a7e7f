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


def bookkeeping_statements(db: str) -> list[str]:
    """The database and the table that records applied migrations (before any migration)."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version",
    ]


def plan(settings: Settings, cluster: str | None = None) -> list[Migration]:
    """What :func:`migrate` applies, in order (bookkeeping first, as version 0); ``cluster``
    gives the cluster form. ``aipulse migrate --cluster NAME --print`` prints it."""
    migs = [Migration(0, "000_bookkeeping", tuple(bookkeeping_statements(settings.database)))] + load(settings)
    return cluster_migrations(migs, cluster) if cluster else migs


def migrate(client, settings: Settings, cluster: str | None = None) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now.

    ``cluster``: apply the cluster form (``ON CLUSTER``, Replicated and Distributed tables).
    A database migrated one way is never migrated the other way (one clear error)."""
    db = settings.database
    book, *migrations = plan(settings, cluster)
    engine = _engine_of(client, db, "schema_migrations")
    if engine is not None and (engine == "Distributed") != bool(cluster):
        how = "for a cluster: run `aipulse migrate --cluster NAME`" if engine == "Distributed" \
            else "for one server: run `aipulse migrate` without --cluster"
        pending = _pending(client, db, migrations)
        if not pending:
            return []   # nothing to do either way (a worker starting against a cluster's schema)
        raise ValueError(f"database {db} was migrated {how} ({', '.join(m.name for m in pending)} pending)")
    if engine is None:
        for stmt in book.statements:
            client.command(stmt)
    applied = []
    for mig in _pending(client, db, migrations):
        for stmt in mig.statements:
            client.command(stmt)
        client.insert(f"{db}.schema_migrations", [[mig.version, mig.name]], column_names=["version", "name"])
        applied.append(mig.name)
    return applied


def _engine_of(client, db: str, table: str) -> str | None:
    rows = client.query("SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                        parameters={"db": db, "t": table}).result_rows
    return rows[0][0] if rows else None


def _pending(client, db: str, migrations: list[Migration]) -> list[Migration]:
    done = {row[0] for row in client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows}
    return [m for m in migrations if m.version not in done]


# --- The cluster variant -------------------------------------------------------------------
# The same migration files, rewritten statement by statement for a ClickHouse cluster
# (``aipulse migrate --cluster NAME``): there is no second copy of the DDL to drift.
#
# - every table ``T`` becomes ``T_local`` (Replicated* engine, ``ON CLUSTER``, a
#   ``/clickhouse/tables/{shard}/DB/T_local`` Keeper path and ``{replica}``: the server's
#   macros) plus ``T`` = ``Distributed(cluster, DB, T_local, key)``, so the worker, the CLI and
#   Grafana keep reading and writing the same names;
# - the sharding key hashes the sorting key without the columns the partition key reads:
#   rows that ReplacingMergeTree may collapse share every sorting-key column, so they land
#   on one shard (FINAL is per shard), and every window of one (key, topic, partition,
#   block) lands on one shard, so the rollup views see whole groups;
# - materialized views read and write the local tables (each shard rolls up its own rows);
# - ALTERs apply to the local table and to its Distributed twin; functions ON CLUSTER.
LOCAL_SUFFIX = "_local"
REPLICA_PATH = "/clickhouse/tables/{{shard}}/{db}/{table}"
_CLUSTER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CREATE_DB = re.compile(r"^CREATE DATABASE IF NOT EXISTS (\w+)$")
_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)(\s)")
_CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO (\w+)\.(\w+) AS")
_CREATE_FN = re.compile(r"^CREATE FUNCTION IF NOT EXISTS (\w+) AS")
_ALTER = re.compile(r"^ALTER TABLE (\w+)\.(\w+) ")
_DROP_VIEW = re.compile(r"^DROP VIEW IF EXISTS (\w+)\.(\w+)$")
_ENGINE = re.compile(r"\bENGINE = (ReplacingMergeTree|MergeTree|SummingMergeTree|AggregatingMergeTree)(?:\(([^()]*)\))?")
_ORDER_BY = re.compile(r"\bORDER BY (\([^()]*\)|\w+)")
_PARTITION_BY = re.compile(r"\bPARTITION BY ([^\n]+)")


def validate_cluster(cluster: str) -> str:
    if not _CLUSTER.match(cluster or ""):
        raise ValueError(f"cluster name {cluster!r} must be a name from the server's remote_servers "
                         "(letters, digits, _)")
    return cluster


def sharding_key(statement: str) -> str:
    """``cityHash64(...)`` of the sorting key minus the partition key's columns (see above)."""
    order = _ORDER_BY.search(statement)
    if not order:
        raise ValueError(f"no ORDER BY in: {statement[:80]}")
    cols = [c.strip() for c in order.group(1).strip("()").split(",")]
    part = _PARTITION_BY.search(statement)
    part_cols = set(re.findall(r"\w+", part.group(1))) if part else set()
    kept = [c for c in cols if c not in part_cols] or cols
    return f"cityHash64({', '.join(kept)})"


def cluster_statements(statements: list[str] | tuple[str, ...], cluster: str,
                       tables: set[str] | None = None) -> list[str]:
    """Rewrite single-node statements (as :func:`load` gives them) for ``cluster``::

        >>> cluster_statements(["CREATE TABLE IF NOT EXISTS db.t (k String) "
        ...                     "ENGINE = ReplacingMergeTree ORDER BY k"], "c")[1]
        'CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c AS db.t_local ENGINE = Distributed(c, db, t_local, cityHash64(k))'
    """
    cluster = validate_cluster(cluster)
    # Table names (created here or by earlier migrations: ``tables``) whose local twin a
    # view, an ALTER or a ``CREATE TABLE ... AS`` must name instead.
    tables = set(tables or ()) | {m.group(2) for s in statements if (m := _CREATE_TABLE.match(s))}
    out: list[str] = []

    def local(db: str, name: str) -> str:
        return f"{db}.{name}{LOCAL_SUFFIX}" if name in tables else f"{db}.{name}"

    for stmt in statements:
        if m := _CREATE_DB.match(stmt):
            out.append(f"{stmt} ON CLUSTER {cluster}")
        elif m := _CREATE_TABLE.match(stmt):
            db, name = m.group(1), m.group(2)
            engine = _ENGINE.search(stmt)
            if not engine:
                raise ValueError(f"{db}.{name}: only MergeTree-family tables can be made replicated")
            path = REPLICA_PATH.format(db=db, table=name + LOCAL_SUFFIX)
            args = ", ".join([f"'{path}'", "'{replica}'"] + ([engine.group(2)] if engine.group(2) else []))
            body = stmt[m.end():]
            # `CREATE TABLE x AS other ENGINE ...` copies other's columns: point it at other's local table.
            body = re.sub(r"^AS (\w+)\.(\w+)", lambda a: f"AS {local(a.group(1), a.group(2))}", body)
            body = _ENGINE.sub(f"ENGINE = Replicated{engine.group(1)}({args})", body, count=1)
            out.append(f"CREATE TABLE IF NOT EXISTS {db}.{name}{LOCAL_SUFFIX} ON CLUSTER {cluster}{m.group(3)}{body}")
            out.append(f"CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} AS {db}.{name}{LOCAL_SUFFIX} "
                       f"ENGINE = Distributed({cluster}, {db}, {name}{LOCAL_SUFFIX}, {sharding_key(stmt)})")
        elif m := _CREATE_MV.match(stmt):
            db, name = m.group(1), m.group(2)
            select = stmt[m.end():]
            select = re.sub(rf"\b{re.escape(db)}\.(\w+)\b", lambda t: local(db, t.group(1)), select)
            out.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} "
                       f"TO {local(m.group(3), m.group(4))} AS{select}")
        elif m := _CREATE_FN.match(stmt):
            out.append(f"CREATE FUNCTION IF NOT EXISTS {m.group(1)} ON CLUSTER {cluster} AS{stmt[m.end():]}")
        elif _DROP_VIEW.match(stmt):  # a view re-created with new columns (migration 007)
            out.append(f"{stmt} ON CLUSTER {cluster}")
        elif m := _ALTER.match(stmt):
            db, name = m.group(1), m.group(2)
            rest = stmt[m.end():]
            if name in tables:
                out.append(f"ALTER TABLE {db}.{name}{LOCAL_SUFFIX} ON CLUSTER {cluster} {rest}")
            out.append(f"ALTER TABLE {db}.{name} ON CLUSTER {cluster} {rest}")
        else:
            raise ValueError(f"no cluster form for this migration statement: {stmt[:80]}")
    return out


def cluster_migrations(migrations: list[Migration], cluster: str) -> list[Migration]:
    """Every migration in its cluster form (same versions and names)."""
    tables = {m.group(2) for mig in migrations for s in mig.statements if (m := _CREATE_TABLE.match(s))}
    return [Migration(mig.version, mig.name, tuple(cluster_statements(mig.statements, cluster, tables)))
            for mig in migrations]

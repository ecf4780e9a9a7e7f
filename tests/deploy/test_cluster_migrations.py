"""The cluster form of the migrations, rendered from the same files and checked for every
table. No cluster runs here: the cluster DDL is parsed by the real ClickHouse parser (chDB's
``formatQuery``); the single-node DDL is run through the real engine."""
from __future__ import annotations

import re

import chdb
import pytest

from aipulse_stream.config import Settings
from aipulse_stream.storage import migrations as M

SETTINGS = Settings.from_env({})
CLUSTER = "prod"


def _single() -> list[str]:
    return [s for m in M.plan(SETTINGS) for s in m.statements]


def _cluster() -> list[str]:
    return [s for m in M.plan(SETTINGS, CLUSTER) for s in m.statements]


def _parse(sql: str) -> str:
    """The statement as the real ClickHouse parser formats it (raises on a syntax error)."""
    # query parameters arrive escaped like TSV fields
    q = sql.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return chdb.query("SELECT formatQuery({q:String})", "TSVRaw", params={"q": q}).bytes().decode()


def _tables(stmts) -> dict[str, str]:
    return {m.group(2): s for s in stmts if (m := M._CREATE_TABLE.match(s))}


def test_single_node_plan_is_the_migration_files_unchanged():
    loaded = [s for m in M.load(SETTINGS) for s in m.statements]
    assert _single() == M.bookkeeping_statements("aipulse") + loaded


def test_every_table_gets_a_replicated_local_table_and_a_distributed_twin():
    single, cluster = _tables(_single()), _tables(_cluster())
    assert {"interactions", "feedback", "evaluations", "metrics_window", "metrics_hourly",
            "metrics_daily", "partition_progress", "alerts", "schema_migrations"} <= set(single)
    for name, ddl in single.items():
        engine = re.search(r"ENGINE = (\w+)(?:\(([^()]*)\))?", ddl)
        local = cluster[name + "_local"]
        assert f"ON CLUSTER {CLUSTER}" in local
        want = (f"ENGINE = Replicated{engine.group(1)}('/clickhouse/tables/{{shard}}/aipulse/{name}_local', "
                f"'{{replica}}'" + (f", {engine.group(2)})" if engine.group(2) else ")"))
        assert want in local, (name, local[:200])
        dist = cluster[name]
        assert re.search(rf"ON CLUSTER {CLUSTER} AS aipulse\.{name}_local ENGINE = "
                         rf"Distributed\({CLUSTER}, aipulse, {name}_local, cityHash64\([^()]+\)\)$", dist), dist
    assert set(cluster) == set(single) | {n + "_local" for n in single}


def test_sharding_key_keeps_collapsible_rows_and_rollup_groups_on_one_shard():
    for name, ddl in _tables(_single()).items():
        order = re.search(r"ORDER BY (\([^()]*\)|\w+)", ddl).group(1).strip("()")
        key = re.search(r"cityHash64\(([^()]+)\)", _tables(_cluster())[name]).group(1)
        assert set(key.split(", ")) <= {c.strip() for c in order.split(",")}, name  # only sorting-key columns
    mw = re.search(r"cityHash64\(([^()]+)\)", _tables(_cluster())["metrics_window"]).group(1)
    assert "window_start" not in mw   # all windows of one block on one shard: the hourly/daily MVs see whole groups
    for rollup in ("metrics_hourly", "metrics_daily"):
        assert re.search(r"cityHash64\(([^()]+)\)", _tables(_cluster())[rollup]).group(1) == mw


def test_materialized_views_read_and_write_local_tables():
    views = [s for s in _cluster() if s.startswith("CREATE MATERIALIZED VIEW")]
    # 002 creates both rollup views; a migration that adds a window column re-creates them (007)
    names = {re.search(r"EXISTS aipulse\.(\w+)", v).group(1) for v in views}
    assert names == {"metrics_hourly_mv", "metrics_daily_mv"} and len(views) % 2 == 0, names
    for v in views:
        assert f"ON CLUSTER {CLUSTER} TO aipulse.metrics_" in v and re.search(r"TO aipulse\.\w+_local AS", v)
        refs = set(re.findall(r"\baipulse\.(\w+)", v.split(" AS", 1)[1]))
        assert refs and all(r.endswith("_local") for r in refs), refs


def test_every_cluster_statement_is_on_the_cluster_and_parses():
    stmts = _cluster()
    assert len(stmts) > len(_single())
    for s in stmts:
        assert f" ON CLUSTER {CLUSTER}" in s, s[:100]
        formatted = _parse(s)
        assert f"ON CLUSTER {CLUSTER}" in formatted
    # the ALTERs reach both the local table and its Distributed twin
    alters = [s for s in stmts if s.startswith("ALTER")]
    altered = {s.split()[2].removeprefix("aipulse.") for s in _single() if s.startswith("ALTER")}
    assert {"interactions", "feedback", "evaluations", "metrics_window", "metrics_hourly"} <= altered
    assert {a.split()[2] for a in alters} == {f"aipulse.{t}{x}" for t in altered for x in ("", "_local")}


def test_bad_cluster_name_and_unknown_statement_are_refused():
    with pytest.raises(ValueError, match="remote_servers"):
        M.plan(SETTINGS, "prod; DROP")
    with pytest.raises(ValueError, match="no cluster form"):
        M.cluster_statements(["DROP TABLE aipulse.x"], CLUSTER)


def test_single_node_plan_runs_on_the_real_engine(tmp_path):
    from chdb import session

    sess = session.Session(str(tmp_path / "ch"))
    try:
        for s in _single():
            sess.query(s)
        names = sess.query("SELECT name FROM system.tables WHERE database = 'aipulse' ORDER BY name", "TSVRaw").bytes().decode().split()
        assert set(_tables(_single())) <= set(names)
    finally:
        sess.close()

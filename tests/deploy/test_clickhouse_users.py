"""The compose stack's ClickHouse users (deploy/clickhouse/users.d/aipulse-users.xml), read
from the file and run in the real ClickHouse engine (chDB).

chDB always authenticates as ``default`` and ignores ``access_control_improvements``, so each
role is tried by loading the shipped users file under a stand-in of the image's stock
users.xml in which ``default`` *is* that role: its profile (by name, from the shipped file)
and its grants (the shipped queries, verbatim). One chDB process per role, one data folder
shared in order: the migrator applies the real migrations, then the writer and the reader
work on those tables."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aipulse_stream.config import Settings
from aipulse_stream.storage import migrations as M

ROOT = Path(__file__).resolve().parents[2]
USERS_XML = ROOT / "deploy" / "clickhouse" / "users.d" / "aipulse-users.xml"
RUNNER = Path(__file__).with_name("chdb_role.py")
ROLES = ("aipulse_writer", "aipulse_migrator", "aipulse_reader")

# What the image ships in /etc/clickhouse-server/users.xml, reduced to what the users file
# refers to (the `default` profile and quota) and the `default` user it removes.
STOCK_USERS = """<clickhouse>
  <profiles><default><max_memory_usage>10000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>::/0</ip></networks>
    <profile>default</profile><quota>default</quota><access_management>1</access_management></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries></interval></default></quotas>
</clickhouse>"""


def _users() -> ET.Element:
    return ET.parse(USERS_XML).getroot()


def _grants(role: str) -> list[str]:
    return [q.text.strip() for q in _users().find(f"users/{role}/grants").findall("query")]


def _config(tmp: Path, users_d: str) -> Path:
    """A server configuration whose users are the stock file plus ``users_d`` in users.d/."""
    (tmp / "users.d").mkdir(parents=True, exist_ok=True)
    (tmp / "users.xml").write_text(STOCK_USERS)
    (tmp / "users.d" / "aipulse-users.xml").write_text(users_d)
    (tmp / "config.xml").write_text(f"<clickhouse><users_config>{tmp / 'users.xml'}</users_config></clickhouse>")
    return tmp / "config.xml"


def _as_default(role: str) -> str:
    """The shipped users file in which the role's element is named `default` (chDB's user),
    its password left to the stock file's empty one (the engine's own login); profile, grants
    and limits untouched."""
    root = copy.deepcopy(_users())
    users = root.find("users")
    for el in list(users):
        if el.tag == "default":
            users.remove(el)   # the `remove` marker: this test replaces default instead
    el = users.find(role)
    el.tag = "default"
    el.remove(el.find("password"))
    return ET.tostring(root, encoding="unicode")


def _run(config: Path, data: Path, statements: list[str], env: dict | None = None) -> list[dict]:
    r = subprocess.run([sys.executable, str(RUNNER), str(config), str(data)], input=json.dumps(statements),
                       capture_output=True, text=True, timeout=120, cwd=config.parent.parent, env=env)  # not beside config.xml: chDB reads ./config.xml at import
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def _role(tmp_path: Path, role: str, statements: list[str]) -> dict[str, dict]:
    config = _config(tmp_path / f"etc-{role}", _as_default(role))
    res = _run(config, tmp_path / "data", statements)
    assert res[0]["sql"] != "<connect>", res[0]["error"]
    return {r["sql"]: r for r in res}


def _denied(r: dict) -> bool:
    return not r["ok"] and ("ACCESS_DENIED" in r["error"] or "READONLY" in r["error"]
                            or "Not enough privileges" in r["error"])


def test_the_file_defines_the_three_users_with_passwords_from_the_environment_only():
    users = _users().find("users")
    assert {el.tag for el in users} == {"default", *ROLES}
    assert users.find("default").get("remove") == "remove"     # no password-less admin
    for role in ROLES:
        el = users.find(role)
        assert el.find("password").get("from_env") == f"AIPULSE_CLICKHOUSE_{role.split('_')[1].upper()}_PASSWORD"
        assert not (el.find("password").text or "").strip(), f"{role}: a literal password in the file"
        assert el.find("access_management").text == "0", f"{role} may manage users"
    assert _grants("aipulse_writer") == ["GRANT SELECT, INSERT ON aipulse.*"]
    assert _grants("aipulse_reader") == ["GRANT SELECT ON aipulse.*"]
    reader = _users().find("profiles/aipulse_reader")
    assert reader.find("readonly").text in ("1", "2")
    for limit in ("max_execution_time", "max_result_rows", "max_memory_usage"):
        assert int(reader.find(limit).text) > 0, limit
        assert reader.find(f"constraints/{limit}/max") is not None, f"{limit} has no ceiling"
    assert reader.find("constraints/readonly/const") is not None


def test_shipped_file_loads_in_the_engine_and_removes_the_default_user(tmp_path):
    # Unchanged file over the stock users.xml: the engine parses every element (profiles,
    # constraints, grants, from_env), and `default` (chDB's login) no longer exists.
    env = {"AIPULSE_CLICKHOUSE_WRITER_PASSWORD": "w1", "AIPULSE_CLICKHOUSE_MIGRATOR_PASSWORD": "m1",
           "AIPULSE_CLICKHOUSE_READER_PASSWORD": "r1", "PATH": "/usr/bin:/bin"}
    res = _run(_config(tmp_path / "etc", USERS_XML.read_text()), tmp_path / "data", ["SELECT 1"], env=env)
    assert res[0]["sql"] == "<connect>" and "default: Authentication failed" in res[0]["error"], res


def test_each_user_can_do_its_job_and_nothing_more(tmp_path):
    settings = Settings.from_env({})
    migrations = [s for m in M.plan(settings) for s in m.statements]
    # what migrate() records after each migration
    migrations += [f"INSERT INTO aipulse.schema_migrations (version, name) VALUES ({m.version}, '{m.name}')"
                   for m in M.load(settings)]
    mig = _role(tmp_path, "aipulse_migrator", migrations + [
        "CREATE USER intruder IDENTIFIED WITH no_password",
        "GRANT ALL ON *.* TO default",
        "CREATE TABLE default.elsewhere (x UInt8) ENGINE = MergeTree ORDER BY x",
        "SELECT count() FROM system.functions WHERE name = 'aipulse_quantile'",
    ])
    for sql in migrations:    # every real migration statement runs as the migrator
        assert mig[sql]["ok"], (sql[:120], mig[sql].get("error"))
    assert mig["SELECT count() FROM system.functions WHERE name = 'aipulse_quantile'"]["result"].strip() == "1"
    for sql in ("CREATE USER intruder IDENTIFIED WITH no_password", "GRANT ALL ON *.* TO default",
                "CREATE TABLE default.elsewhere (x UInt8) ENGINE = MergeTree ORDER BY x"):
        assert _denied(mig[sql]), (sql, mig[sql])

    writer = _role(tmp_path, "aipulse_writer", [
        "INSERT INTO aipulse.feedback (event_id, interaction_id, ts) VALUES ('e1', 'i1', now())",
        "SELECT count() FROM aipulse.feedback",
        "SELECT version FROM aipulse.schema_migrations FINAL ORDER BY version",
        "DROP TABLE aipulse.feedback",
        "TRUNCATE TABLE aipulse.feedback",
        "ALTER TABLE aipulse.feedback DELETE WHERE 1",
        "CREATE TABLE aipulse.extra (x UInt8) ENGINE = MergeTree ORDER BY x",
        "CREATE USER intruder IDENTIFIED WITH no_password",
        "DROP USER aipulse_reader",
        "GRANT ALL ON *.* TO default",
    ])
    assert writer["INSERT INTO aipulse.feedback (event_id, interaction_id, ts) VALUES ('e1', 'i1', now())"]["ok"]
    assert writer["SELECT count() FROM aipulse.feedback"]["result"].strip() == "1"
    # the worker's start-up check (migrations already applied) reads schema_migrations
    assert writer["SELECT version FROM aipulse.schema_migrations FINAL ORDER BY version"]["result"].split() \
        == [str(m.version) for m in M.load(settings)]
    for sql in list(writer)[3:]:
        assert _denied(writer[sql]), (sql, writer[sql])

    reader = _role(tmp_path, "aipulse_reader", [
        "SELECT count() FROM aipulse.feedback",
        "SELECT aipulse_quantile(0.5, map(toInt16(1), toUInt64(1)))",
        "SELECT 1 SETTINGS max_execution_time = 50",       # what Grafana's plugin sends
        "INSERT INTO aipulse.feedback (event_id) VALUES ('e2')",
        "ALTER TABLE aipulse.feedback DELETE WHERE 1",
        "ALTER TABLE aipulse.feedback ADD COLUMN z UInt8",
        "DROP TABLE aipulse.feedback",
        "TRUNCATE TABLE aipulse.feedback",
        "CREATE TABLE aipulse.extra (x UInt8) ENGINE = MergeTree ORDER BY x",
        "CREATE USER intruder IDENTIFIED WITH no_password",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 SETTINGS max_execution_time = 100000",
        "SELECT 1 SETTINGS max_result_rows = 0",
        "SELECT count() FROM (SELECT number FROM numbers(5000000))",
        "SELECT number FROM numbers(5000000) FORMAT Null",
    ])
    assert reader["SELECT count() FROM aipulse.feedback"]["result"].strip() == "1"
    assert reader["SELECT 1 SETTINGS max_execution_time = 50"]["ok"], reader["SELECT 1 SETTINGS max_execution_time = 50"]
    for sql in list(reader)[3:10]:
        assert _denied(reader[sql]), (sql, reader[sql])
    for sql in ("SELECT 1 SETTINGS readonly = 0", "SELECT 1 SETTINGS max_execution_time = 100000",
                "SELECT 1 SETTINGS max_result_rows = 0"):
        assert not reader[sql]["ok"] and "SETTING_CONSTRAINT_VIOLATION" in reader[sql]["error"] \
            or "READONLY" in reader[sql].get("error", ""), (sql, reader[sql])
    assert reader["SELECT count() FROM (SELECT number FROM numbers(5000000))"]["ok"]   # aggregates are fine
    big = reader["SELECT number FROM numbers(5000000) FORMAT Null"]
    assert not big["ok"] and "TOO_MANY_ROWS_OR_BYTES" in big["error"], big

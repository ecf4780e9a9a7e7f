"""Run SQL statements in the ClickHouse engine (chDB) under one server configuration.

Used by test_clickhouse_users.py in a subprocess (one chDB engine per process, and each role
needs its own users configuration)::

    python tests/deploy/chdb_role.py CONFIG_XML DATA_DIR < statements.json   # prints JSON results

Every statement's outcome is one JSON object: {"sql", "ok", "result"|"error"}.
"""
from __future__ import annotations

import json
import sys

from chdb import session


def run(config: str, data: str, statements: list[str]) -> list[dict]:
    out = []
    try:
        s = session.Session(f"file:{data}?config-file={config}")
    except Exception as err:  # the configuration itself was refused: report it as the only outcome
        return [{"sql": "<connect>", "ok": False, "error": str(err).splitlines()[0]}]
    try:
        for sql in statements:
            try:
                out.append({"sql": sql, "ok": True, "result": s.query(sql, "TSV").bytes().decode()})
            except Exception as err:
                out.append({"sql": sql, "ok": False, "error": str(err).splitlines()[0]})
    finally:
        s.close()
    return out


if __name__ == "__main__":
    json.dump(run(sys.argv[1], sys.argv[2], json.load(sys.stdin)), sys.stdout)

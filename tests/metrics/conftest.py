"""Fixtures of the metrics tests: the ClickHouse engine in-process (chDB behind clickhouse-connect).

chDB's clickhouse-connect backend (``dsn="chdb://<folder>"``, chdb >= 4.4) runs the real
engine in this process: same SQL, same MergeTree, same FINAL. One process may own one data
folder, so the session shares one client and every test gets its own database.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # gen.py, harness.py

_counter = itertools.count()


@pytest.fixture(scope="session")
def ch_client(tmp_path_factory):
    clickhouse_connect = pytest.importorskip("clickhouse_connect")
    pytest.importorskip("chdb")
    folder = tmp_path_factory.mktemp("chdb")
    client = clickhouse_connect.get_client(dsn=f"chdb://{folder}")
    yield client
    client.close()


@pytest.fixture
def ch(ch_client, request):
    """(client, settings) with a freshly migrated database of its own."""
    from aipulse_stream.config import Settings
    from aipulse_stream.storage.migrations import migrate

    name = f"m{next(_counter)}_{request.node.name[:20]}"
    db = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    settings = Settings(database=db)
    migrate(ch_client, settings)
    yield ch_client, settings
    ch_client.command(f"DROP DATABASE IF EXISTS {db}")

"""Fixtures of the Grafana tests: databases on the real local ClickHouse endpoint, seeded once.

Each database is created with the project's migrations (``migrate(client, Settings(database=...))``)
so the dashboards' SQL runs against the tables and SQL functions production has.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def gclient(clickhouse_url):
    from aipulse_stream.storage.clickhouse import client_for_url

    client = client_for_url(clickhouse_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def new_db(gclient):
    from aipulse_stream.config import Settings
    from aipulse_stream.storage.migrations import migrate

    made = []

    def make(tag: str) -> str:
        db = f"grafana_test_{tag}_{uuid.uuid4().hex[:6]}"
        migrate(gclient, Settings(database=db))
        made.append(db)
        return db

    yield make
    for db in made:
        gclient.command(f"DROP DATABASE IF EXISTS {db}")

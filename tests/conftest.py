"""Shared fixtures: the real local stack (Kafka broker, ClickHouse endpoint over chDB, worker).

The stack is started once per test session in a temporary AIPULSE_HOME on free ports and
stopped at the end (by the pids it recorded). Set AIPULSE_TEST_CLICKHOUSE_URL to run the
same tests against a ClickHouse server instead of the local endpoint.
"""
from __future__ import annotations

import os
import uuid

import pytest

from aipulse_stream.config import Settings


@pytest.fixture(scope="session")
def stack_home(tmp_path_factory):
    return tmp_path_factory.mktemp("aipulse-home")


@pytest.fixture(scope="session")
def stack_settings(stack_home):
    """Settings of the test stack; the environment is set so subprocesses (CLI, workers) share it."""
    os.environ["AIPULSE_HOME"] = str(stack_home)
    os.environ.pop("AIPULSE_KAFKA_BOOTSTRAP", None)
    if os.environ.get("AIPULSE_TEST_CLICKHOUSE_URL"):
        os.environ["AIPULSE_CLICKHOUSE_URL"] = os.environ["AIPULSE_TEST_CLICKHOUSE_URL"]
    else:
        os.environ.pop("AIPULSE_CLICKHOUSE_URL", None)
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(stack_settings):
    """The running local stack: kafka, clickhouse and one worker. Yields status() output."""
    from aipulse_local.stack import down, up

    try:
        st = up(stack_settings, progress=lambda m: print("[stack]", m))
        yield st
    finally:
        down(stack_settings)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack):
    return stack["kafka"]["address"]


@pytest.fixture(scope="session")
def clickhouse_url(stack, stack_settings):
    from aipulse_local.stack import clickhouse_url as url

    return url(stack_settings)


@pytest.fixture
def ch(clickhouse_url):
    from aipulse_stream.storage.clickhouse import client_for_url

    client = client_for_url(clickhouse_url)
    yield client
    client.close()


@pytest.fixture
def service_name():
    """A service name unique to the test: tests share one stack and filter by it."""
    return f"t-{uuid.uuid4().hex[:10]}"

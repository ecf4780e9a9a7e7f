"""Fixtures of the fault suite.

Scenarios that only kill their own workers use the session's stack (tests/conftest.py).
Scenarios that stop Kafka or the ClickHouse endpoint use ``private_stack``: a stack of their
own (its own AIPULSE_HOME in a tmp dir, its own broker and endpoint on free ports), started
once per module and stopped at its end, so no other test module sees the outage. Its
settings are passed explicitly everywhere (workers get them through worker_env; the CLI
through ``private_stack.env``), never through os.environ, which the session stack owns.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from aipulse_stream.config import Settings


@dataclass
class PrivateStack:
    settings: Settings
    bootstrap: str
    clickhouse_url: str

    @property
    def env(self) -> dict:
        """Environment for CLI subprocesses reading this stack."""
        return {"AIPULSE_HOME": str(self.settings.state_dir), "AIPULSE_KAFKA_BOOTSTRAP": self.bootstrap,
                "AIPULSE_CLICKHOUSE_URL": self.clickhouse_url}

    def client(self):
        from aipulse_stream.storage.clickhouse import client_for_url

        return client_for_url(self.clickhouse_url)

    # -- faults -----------------------------------------------------------------------
    def stop_kafka(self) -> int | None:
        from aipulse_local.stack import stop_component

        return stop_component(self.settings, "kafka")

    def start_kafka(self) -> None:
        """Restart the broker over its data, on the same ports (recorded by the launcher)."""
        from aipulse_local.kafka import start_kafka
        from aipulse_local.state import StackState

        k = start_kafka(self.settings.state_dir / "kafka", port=0, partitions=self.settings.topic_partitions)
        assert k.bootstrap == self.bootstrap
        StackState(self.settings.state_dir).put("kafka", pid=k.pid, address=k.bootstrap, log=str(k.log), kind="kafka")

    def stop_clickhouse(self) -> int | None:
        from aipulse_local.stack import stop_component

        return stop_component(self.settings, "clickhouse")

    def start_clickhouse(self) -> None:
        """Restart the endpoint over its data on the same port (the workers keep their URL)."""
        from aipulse_local.clickhouse import start_clickhouse
        from aipulse_local.state import StackState

        port = int(self.clickhouse_url.rsplit(":", 1)[1])
        c = start_clickhouse(self.settings.state_dir / "clickhouse" / "data", port=port)
        StackState(self.settings.state_dir).put("clickhouse", pid=c.pid, address=f"{c.host}:{c.port}",
                                                log=str(c.log), kind="clickhouse")


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory):
    """A stack of the module's own (Kafka + ClickHouse endpoint, no default worker)."""
    from aipulse_local.stack import clickhouse_url, down, kafka_bootstrap, up

    home = tmp_path_factory.mktemp("aipulse-fault-home")
    settings = Settings(home=home)
    try:
        up(settings, progress=lambda m: print("[fault stack]", m), worker=False)
        yield PrivateStack(settings, kafka_bootstrap(settings), clickhouse_url(settings))
    finally:
        down(settings)

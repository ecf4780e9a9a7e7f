"""Start the local ClickHouse endpoint (chDB behind ClickHouse's HTTP protocol) as a process."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .process import check_port_free, http_ok, free_port, spawn, wait_until

START_TIMEOUT_S = 60


@dataclass
class ClickHouseProcess:
    pid: int
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def ping(url: str) -> bool:
    return http_ok(url.rstrip("/") + "/ping")


def start_clickhouse(data_dir: Path, port: int = 0, host: str = "127.0.0.1") -> ClickHouseProcess:
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    check_port_free(host, port, "the ClickHouse endpoint", "AIPULSE_CLICKHOUSE_PORT")
    log_path = data_dir.parent / "clickhouse.log"
    pid = spawn([sys.executable, "-m", "aipulse_local.clickhouse_endpoint", "--data", str(data_dir),
                 "--host", host, "--port", str(port)], log_path)
    url = f"http://{host}:{port}"
    wait_until(lambda: ping(url), START_TIMEOUT_S, pid, "the ClickHouse endpoint", log_path)
    return ClickHouseProcess(pid=pid, host=host, port=port, log=log_path)

"""Start the local ClickHouse endpoint (chDB behind ClickHouse's HTTP protocol) as a process.

The endpoint's users come from the stack's credentials file next to the data folder
(``<home>/clickhouse/credentials.json``), generated on first start and kept 0600::

    >>> ch = start_clickhouse(Path(".aipulse") / "clickhouse" / "data")   # doctest: +SKIP
    >>> ch.credentials.url(ch.address)                                   # doctest: +SKIP
    'http://aipulse:...@127.0.0.1:40123'
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .credentials import FILE_NAME, Credentials, ensure_credentials
from .process import check_port_free, http_ok, free_port, spawn, wait_until
from .state import process_identity

START_TIMEOUT_S = 60


@dataclass
class ClickHouseProcess:
    pid: int
    host: str
    port: int
    log: Path
    credentials: Credentials
    identity: dict

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Without the user: for /ping and for display."""
        return f"http://{self.address}"

    def state(self) -> dict:
        """What the state file records (the URL carries the writer, so scripts keep working)."""
        return {"pid": self.pid, "address": self.address, "log": str(self.log), "kind": "clickhouse",
                "url": self.credentials.url(self.address),
                "reader_url": self.credentials.url(self.address, role="reader"), **self.identity}


def ping(url: str) -> bool:
    return http_ok(url.rstrip("/") + "/ping")


def start_clickhouse(data_dir: Path, port: int = 0, host: str = "127.0.0.1") -> ClickHouseProcess:
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # The data files are the database: no other local user reads them past the endpoint.
    os.chmod(data_dir.parent, 0o700)
    creds_path = data_dir.parent / FILE_NAME
    credentials = ensure_credentials(creds_path)
    port = port or free_port(host)
    check_port_free(host, port, "the ClickHouse endpoint", "AIPULSE_CLICKHOUSE_PORT")
    log_path = data_dir.parent / "clickhouse.log"
    pid = spawn([sys.executable, "-m", "aipulse_local.clickhouse_endpoint", "--data", str(data_dir),
                 "--credentials", str(creds_path), "--host", host, "--port", str(port)], log_path)
    url = f"http://{host}:{port}"
    wait_until(lambda: ping(url), START_TIMEOUT_S, pid, "the ClickHouse endpoint", log_path)
    return ClickHouseProcess(pid=pid, host=host, port=port, log=log_path, credentials=credentials,
                             identity=process_identity(pid))

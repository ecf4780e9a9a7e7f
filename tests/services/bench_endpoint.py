"""Requests per second through the local ClickHouse endpoint, over clickhouse-connect.

200 inserts of 100 rows, then 200 parameterized SELECTs, from 1 and from 4 threads (one
client each), against a fresh endpoint in a temporary folder::

    .venv/bin/python tests/services/bench_endpoint.py            # this endpoint
    .venv/bin/python tests/services/bench_endpoint.py OLD.py     # an older clickhouse_endpoint.py file, for comparison

(An older endpoint file takes no credentials: it is run as `OLD.py --data DIR --port P`.)
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aipulse_local.clickhouse import start_clickhouse
from aipulse_stream.storage.clickhouse import client_for_url

REQUESTS = 200
ROWS = 100


def start(old: str | None) -> tuple[str, int]:
    home = Path(tempfile.mkdtemp())
    if not old:
        ch = start_clickhouse(home / "clickhouse" / "data")
        return ch.credentials.url(ch.address), ch.pid
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, old, "--data", str(home), "--port", str(port)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            client_for_url(url).command("SELECT 1")
            break
        except Exception:
            time.sleep(0.2)
    return url, proc.pid


def main() -> None:
    url, pid = start(sys.argv[1] if len(sys.argv) > 1 else None)
    try:
        client_for_url(url).command("CREATE TABLE bench (id UInt32, s String) ENGINE = MergeTree ORDER BY id")

        def work(kind: str, n: int) -> None:
            c = client_for_url(url)
            for i in range(n):
                if kind == "insert":
                    c.insert("bench", [[i, "x"]] * ROWS, column_names=["id", "s"])
                else:
                    c.query("SELECT count() FROM bench WHERE id = {i:UInt32}", parameters={"i": i})
            c.close()

        for kind in ("insert", "select"):
            for threads in (1, 4):
                t = time.perf_counter()
                ths = [threading.Thread(target=work, args=(kind, REQUESTS // threads)) for _ in range(threads)]
                for th in ths:
                    th.start()
                for th in ths:
                    th.join()
                print(f"{kind:6} threads={threads}: {REQUESTS / (time.perf_counter() - t):.0f} requests/s")
    finally:
        os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()

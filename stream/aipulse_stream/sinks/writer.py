"""The one ClickHouse writer every sink shares: a few connections, whole batches, retried.

clickhouse-connect clients are not for concurrent use, so the writer keeps one client per
thread of a small pool; inserts into different tables of one batch then run at the same time
(the raw tables, the window rows), and blocking HTTP stays off the event loop::

    writer = ClickHouseWriter(settings)
    await writer.start()                                   # connects (safe twice)
    await writer.insert("interactions", columns, names, column_oriented=True)
    rows = await writer.run(lambda c: c.query("SELECT 1").result_rows, "probe")
    await writer.stop()                                    # safe without start, safe twice

Every call is retried with backoff until it succeeds (sinks/retry.py): a sink never acks what
it has not stored. The writer holds no data between calls, so stopping has nothing to flush.
It adds up the client's wall time and the server's own ``elapsed_ns`` per insert
(``wall_s``/``server_s``): a wide gap means the client thread waits for the interpreter
(the event loop holding the GIL), not for ClickHouse.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from prometheus_client import Counter

from .. import crashpoints
from .. import selfmetrics as m
from ..config import Settings
from ..storage.clickhouse import connect
from .retry import retry

log = logging.getLogger("aipulse.writer")

# Beside aipulse_worker_insert_seconds (the client's wall time): the server's own time for the
# same inserts. The gap is time the client thread spent waiting (for the GIL, the network).
INSERT_SERVER_SECONDS = Counter("aipulse_worker_insert_server_seconds",
                                "Server-side elapsed time of the worker's ClickHouse inserts (elapsed_ns)", ["table"])


class ClickHouseWriter:
    def __init__(self, settings: Settings, connections: int | None = None):
        self.settings = settings
        self.connections = connections or settings.clickhouse_connections
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self.wall_s = 0.0     # client-side time of all inserts
        self.server_s = 0.0   # the server's elapsed time of the same inserts (when it says)
        self.inserts = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.connections, thread_name_prefix="aipulse-ch")

    async def stop(self) -> None:
        """Close every connection; safe without start and safe twice."""
        executor, self._executor = self._executor, None
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
        if executor is not None:
            executor.shutdown(wait=False)

    # -- calls -----------------------------------------------------------------------------
    def client(self):
        """This thread's client (made on first use). Call it only on the writer's threads."""
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = connect(self.settings)
            with self._lock:
                self._clients.append(c)
        return c

    def _call(self, fn: Callable[[Any], Any]):
        loop = asyncio.get_running_loop()
        if self._executor is None:
            raise RuntimeError("ClickHouseWriter used before start()")
        return loop.run_in_executor(self._executor, self._on_thread, fn)

    def _on_thread(self, fn):
        try:
            return fn(self.client())
        except Exception:
            # A broken connection is replaced at the next try (a server restart, a timeout).
            self._drop_client()
            raise

    def _drop_client(self) -> None:
        c = getattr(self._local, "client", None)
        self._local.client = None
        if c is not None:
            with self._lock:
                if c in self._clients:
                    self._clients.remove(c)
            try:
                c.close()
            except Exception:
                pass

    async def run(self, fn: Callable[[Any], Any], what: str):
        """``fn(client)`` on one of the writer's threads, retried until it returns."""
        return await retry(lambda: self._call(fn), what, self.settings.insert_retry_max_s)

    def submit(self, fn: Callable[[Any], Any]) -> None:
        """Fire and forget (a gauge sample): a failure only leaves its result unused."""
        if self._executor is not None:
            self._executor.submit(self._on_thread, fn).add_done_callback(lambda f: f.exception())

    async def insert(self, table: str, data, column_names: list[str], *, column_oriented: bool = False,
                     crash_point: str | None = None) -> None:
        """Insert ``data`` (rows, or columns when ``column_oriented``) into ``database.table``."""
        target = f"{self.settings.database}.{table}"

        def do(client):
            started = time.perf_counter()
            summary = client.insert(target, data, column_names=column_names, column_oriented=column_oriented)
            wall = time.perf_counter() - started
            m.INSERT_SECONDS.labels(table).observe(wall)
            server_ns = (getattr(summary, "summary", None) or {}).get("elapsed_ns")
            self.wall_s += wall
            self.inserts += 1
            if server_ns is not None:
                self.server_s += int(server_ns) / 1e9
                INSERT_SERVER_SECONDS.labels(table).inc(int(server_ns) / 1e9)
            return None

        await retry(lambda: self._call(do), f"insert into {table}", self.settings.insert_retry_max_s,
                    on_failure=lambda _e: m.INSERT_FAILURES.labels(table).inc())
        if crash_point:
            crashpoints.reached(crash_point)

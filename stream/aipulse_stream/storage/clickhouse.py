"""The one way the stack reaches ClickHouse: clickhouse-connect over HTTP, from one URL.

``AIPULSE_CLICKHOUSE_URL`` points at a ClickHouse server (``http://user:pass@host:8123``) or
at the local stack's chDB endpoint (aipulse_local.clickhouse_endpoint; the ``aipulse`` command
and the stack's workers are handed its address: this package never reads the stack's state)::

    >>> client = connect(Settings.from_env())   # doctest: +SKIP
    >>> client.query("SELECT 1").result_rows     # doctest: +SKIP
    [(1,)]
"""
from __future__ import annotations

from urllib.parse import unquote, urlparse

import logging

import clickhouse_connect

from ..config import Settings


# clickhouse-connect logs a stack trace for a refused connection before raising; the
# ClickHouseUnavailable below already says it in one line.
logging.getLogger("clickhouse_connect.driver.httpclient").setLevel(logging.CRITICAL)
logging.getLogger("clickhouse_connect.driver._backend.http_sync").setLevel(logging.CRITICAL)


class ClickHouseUnavailable(RuntimeError):
    """ClickHouse could not be reached; the message says what to do."""


def client_for_url(url: str, **kwargs):
    u = urlparse(url)
    if u.scheme not in ("http", "https"):
        raise ClickHouseUnavailable(f"AIPULSE_CLICKHOUSE_URL {url!r} must start with http:// or https://")
    try:
        return clickhouse_connect.get_client(
            host=u.hostname or "127.0.0.1",
            port=u.port or (8443 if u.scheme == "https" else 8123),
            username=unquote(u.username) if u.username else "default",
            password=unquote(u.password) if u.password else "",
            secure=u.scheme == "https",
            connect_timeout=kwargs.pop("connect_timeout", 5),
            send_receive_timeout=kwargs.pop("send_receive_timeout", 120),
            **kwargs,
        )
    except Exception as err:  # clickhouse-connect raises several types for "not there"
        text = str(err)
        why = "connection refused" if "refused" in text.lower() else (text.splitlines()[0][:200] if text else type(err).__name__)
        raise ClickHouseUnavailable(
            f"cannot reach ClickHouse at {u.scheme}://{u.hostname}:{u.port}: {why}"
            " (start the local stack with `aipulse up`, or set AIPULSE_CLICKHOUSE_URL to a running server)"
        ) from None


def resolve_url(settings: Settings) -> str:
    """The configured URL, else a clear error."""
    if settings.clickhouse_url:
        return settings.clickhouse_url
    raise ClickHouseUnavailable(
        "no ClickHouse configured: run `aipulse up` to start the local stack, or set AIPULSE_CLICKHOUSE_URL"
    )


def connect(settings: Settings, **kwargs):
    return client_for_url(resolve_url(settings), **kwargs)


# -- the worker's reads (every SQL read of the pipeline lives here) -----------------------

def stored_offsets(client, database: str, topic: str, tables: tuple[str, ...],
                   partitions: list[int]) -> dict[int, dict[str, int]]:
    """Per partition, the highest ``_offset`` stored in EACH raw table (-1: none)."""
    found: dict[int, dict[str, int]] = {p: dict.fromkeys(tables, -1) for p in partitions}
    if not partitions:
        return found
    plist = ",".join(str(int(p)) for p in partitions)
    sql = " UNION ALL ".join(
        f"SELECT '{t}', _partition, max(_offset) FROM {database}.{t} WHERE _topic = {{topic:String}} "
        f"AND _partition IN ({plist}) GROUP BY _partition"
        for t in tables
    )
    for table, p, off in client.query(sql, parameters={"topic": topic}).result_rows:
        found[int(p)][table] = int(off)
    return found


def table_rows(client, database: str) -> list[tuple[str, int]]:
    """(table, active rows) of a database, from system.parts (cheap: no table is read)."""
    return [(t, int(n)) for t, n in client.query(
        "SELECT table, sum(rows) FROM system.parts WHERE database = {db:String} AND active GROUP BY table",
        parameters={"db": database}).result_rows]

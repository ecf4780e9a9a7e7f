"""A local endpoint that speaks ClickHouse's HTTP protocol in front of chDB.

DEVELOPMENT CONVENIENCE, not a server: chDB is the ClickHouse engine in-process (same SQL,
same MergeTree), and one process may own a data folder, so the local stack runs this one
process as the folder's single owner and every other process (worker, CLI, tests) talks to
it over HTTP with clickhouse-connect, exactly as it would talk to a ClickHouse server.
Production points ``AIPULSE_CLICKHOUSE_URL`` at a real server or cluster; nothing else changes.

What it serves (the subset clickhouse-connect and Grafana's plugin use):

- ``GET /ping`` and ``GET /`` -> ``Ok.``
- a query in the ``query`` URL parameter or in the body (GET or POST);
- per-query settings as URL parameters (applied with SET, then reset), ``database``,
  ``default_format``, ``param_<name>`` query parameters;
- ``INSERT ... FORMAT <fmt>`` with the data in the body (after the query, or the whole body
  when the query is in the URL), bodies compressed with gzip, deflate, br, zstd or lz4;
- errors as a non-200 status with ``X-ClickHouse-Exception-Code`` and ClickHouse's text;
- concurrent requests (a threaded server; queries run one at a time on the engine).

Run it::

    python -m aipulse_local.clickhouse_endpoint --data .aipulse/clickhouse --port 8123
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import logging
import re
import signal
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

log = logging.getLogger("aipulse.clickhouse_endpoint")

# URL parameters that are part of the HTTP interface, not query settings.
TRANSPORT_PARAMS = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check",
    "compress", "decompress", "user", "password", "query_id", "quota_key", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "enable_http_compression",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "http_zlib_compression_level",
    "role", "http_response_buffer_size",
}
# The data starts right after the format name and one line break: binary data may itself start
# with bytes that look like whitespace (a Native block of 12 columns starts with 0x0C).
_INSERT_FORMAT = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+([A-Za-z0-9_]+)[ \t]*(?:\r?\n)?", re.I | re.S)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_HTTP_STATUS_BY_CODE = {
    # ClickHouse's own mapping for the common cases (see HTTPHandler.cpp).
    "62": 400, "47": 404, "60": 404, "81": 404, "46": 404, "516": 403, "497": 403, "164": 403,
}


def _decode_body(data: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return data
    enc = encoding.lower().strip()
    if enc == "gzip":
        return gzip.decompress(data)
    if enc == "deflate":
        return zlib.decompress(data)
    if enc == "br":
        import brotli  # optional; clickhouse-connect only sends br when brotli is installed

        return brotli.decompress(data)
    if enc == "zstd":
        import zstandard

        return _all_frames(data, lambda: zstandard.ZstdDecompressor().decompressobj())
    if enc == "lz4":
        import lz4.frame

        return _all_frames(data, lz4.frame.LZ4FrameDecompressor)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _all_frames(data: bytes, make) -> bytes:
    """Decompress concatenated frames (clickhouse-connect compresses each block on its own)."""
    out = []
    while data:
        d = make()
        out.append(d.decompress(data))
        data = getattr(d, "unused_data", b"")
    return b"".join(out)


class Engine:
    """One chDB session over a data folder, used by one request at a time."""

    def __init__(self, path: str):
        from chdb import session

        self._session = session.Session(path)
        self._lock = threading.Lock()
        self.version = self._session.query("SELECT version()", "TSV").bytes().decode().strip()

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def run(self, sql: str, fmt: str, settings: dict, database: str | None, params: dict,
            insert_data: bytes | None, insert_format: str | None, insert_target: str | None) -> tuple[bytes, dict]:
        with self._lock:
            applied = []
            try:
                if database:
                    self._session.query(f"USE {_ident(database)}")
                for name, value in settings.items():
                    self._session.query(f"SET {name} = {_literal(value)}")
                    applied.append(name)
                if insert_data is not None:
                    ins = self._session.send_insert(f"INSERT INTO {insert_target}", insert_format)
                    if insert_data:
                        ins.append(insert_data)
                    res = ins.finish()
                    return b"", {"written_rows": str(res.rows_written), "written_bytes": str(res.bytes_written)}
                res = self._session.query(sql, fmt, params=params or None)
                # (the result's row/byte counters fail on some binary outputs: not worth a header)
                return res.bytes(), {}
            finally:
                for name in applied:
                    try:
                        self._session.query(f"SET {name} = DEFAULT")
                    except Exception:  # a setting that cannot be reset only affects later defaults
                        log.warning("could not reset setting %s", name)
                if database:
                    try:
                        self._session.query("USE default")
                    except Exception:
                        pass


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(BaseHTTPRequestHandler):
    server_version = "aipulse-chdb-endpoint"
    protocol_version = "HTTP/1.1"
    engine: Engine  # set on the subclass made by serve()

    def log_message(self, fmt, *args):  # route http.server's stderr chatter to logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        url = urlparse(self.path)
        if url.path in ("/ping",) or (url.path == "/" and not url.query and self.command == "GET"):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        query_id = str(uuid.uuid4())
        base_headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": "aipulse-chdb-endpoint",
        }
        try:
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            body = self._read_body()
            body = _decode_body(body, self.headers.get("Content-Encoding"))
            sql = params.get("query", "")
            insert_data = insert_format = insert_target = None
            if sql:
                m = _INSERT_FORMAT.match(sql)
                if m:
                    insert_target, insert_format, insert_data = m.group(1), m.group(2), body
                elif body:
                    sql = sql + "\n" + body.decode("utf-8")
            else:
                m = _INSERT_FORMAT.match(body[:65536].decode("utf-8", errors="replace"))
                if m:
                    head = m.group(0).encode("utf-8")
                    insert_target, insert_format, insert_data = m.group(1), m.group(2), body[len(head):]
                else:
                    sql = body.decode("utf-8")
            if not sql.strip() and insert_data is None:
                raise _HttpError(400, "62", "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
            settings = {
                k: v for k, v in params.items()
                if k not in TRANSPORT_PARAMS and not k.startswith("param_") and _SETTING_NAME.match(k)
            }
            qparams = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
            fmt = params.get("default_format") or "TabSeparated"
            started = time.perf_counter()
            out, summary = self.engine.run(
                sql, fmt, settings, params.get("database"), qparams, insert_data, insert_format, insert_target
            )
            summary["elapsed_ns"] = str(int((time.perf_counter() - started) * 1e9))
            headers = dict(base_headers)
            headers["X-ClickHouse-Summary"] = json.dumps(summary)
            headers["Content-Type"] = "application/octet-stream"
            self._reply(200, out, headers)
        except _HttpError as err:
            self._error(err.status, err.code, err.text, base_headers)
        except Exception as err:  # engine errors carry ClickHouse's own text and code
            log.debug("query failed: %s %s %s", self.path, dict(self.headers), err)
            text = str(err).strip() or type(err).__name__
            m = _ERROR_CODE.search(text)
            code = m.group(1) if m else "1002"
            if not m:
                text = f"Code: {code}. DB::Exception: {text}. (UNKNOWN_EXCEPTION)"
            self._error(_HTTP_STATUS_BY_CODE.get(code, 500), code, text, base_headers)

    def _error(self, status: int, code: str, text: str, headers: dict) -> None:
        headers = dict(headers)
        headers["X-ClickHouse-Exception-Code"] = code
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        self._reply(status, (text + "\n").encode("utf-8", errors="replace"), headers)


class _HttpError(Exception):
    def __init__(self, status: int, code: str, text: str):
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


def serve(data: str, host: str, port: int) -> ThreadingHTTPServer:
    engine = Engine(data)
    handler = type("BoundHandler", (Handler,), {"engine": engine})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.engine = engine  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ClickHouse HTTP protocol in front of chDB (development only)")
    ap.add_argument("--data", required=True, help="chDB data folder (owned by this process)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if os.environ.get("AIPULSE_DEBUG") else logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        server = serve(args.data, args.host, args.port)
    except OSError as err:
        print(f"aipulse clickhouse endpoint: cannot listen on {args.host}:{args.port}: {err.strerror}"
              " (choose another port or stop what uses it)", file=sys.stderr)
        return 2
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"aipulse clickhouse endpoint: cannot open chDB data folder {args.data}: {first}"
              " (is another endpoint already running on it?)", file=sys.stderr)
        return 2

    def _stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("serving ClickHouse HTTP on %s:%d over chDB %s (data %s)", args.host, args.port,
             server.engine.version, args.data)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

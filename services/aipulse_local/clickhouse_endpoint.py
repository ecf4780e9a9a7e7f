"""A local endpoint that speaks ClickHouse's HTTP protocol in front of chDB.

DEVELOPMENT CONVENIENCE, not a server: chDB is the ClickHouse engine in-process (same SQL,
same MergeTree), and one process may own a data folder, so the local stack runs this one
process as the folder's single owner and every other process (worker, CLI, tests) talks to
it over HTTP with clickhouse-connect, exactly as it would talk to a ClickHouse server.
Production points ``AIPULSE_CLICKHOUSE_URL`` at a real server or cluster; nothing else changes.

Who gets in (see docs/security.md):

- every query needs a user of the stack's credentials file (``--credentials``, made by
  `aipulse up`, 0600): HTTP basic auth, ``X-ClickHouse-User``/``X-ClickHouse-Key`` or
  ``user``/``password`` URL parameters, as clickhouse-connect sends them; otherwise
  ``516 AUTHENTICATION_FAILED``. The writer may write; the reader's queries run readonly;
- a request with a browser ``Origin`` header is refused (403): no web page can reach it;
- statements that reach files, URLs, other servers or programs (``file()``, ``url()``,
  ``INTO OUTFILE``, ``INSERT INTO FUNCTION``, ``File``/``URL`` engines, ...) are refused with
  ``497 ACCESS_DENIED``, judged by the engine's own parser (aipulse_local.sql_guard);
- ``GET /ping`` answers ``Ok.`` without a user, as a ClickHouse server does (health checks).

What it serves (the subset clickhouse-connect and Grafana's plugin use):

- a query in the ``query`` URL parameter, in the body, or as multipart form fields (GET or POST);
- per-query settings as URL parameters, ``database``, ``default_format``, ``param_<name>``
  query parameters, ``query_id`` (echoed in ``X-ClickHouse-Query-Id``);
- ``INSERT ... FORMAT <fmt>`` with the data in the body (after the query, or the whole body
  when the query is in the URL), bodies compressed with gzip, deflate, br, zstd or lz4;
- errors as a non-200 status with ``X-ClickHouse-Exception-Code`` and ClickHouse's text;
- concurrent requests: each request runs on its own chDB connection (chDB runs queries of
  different connections in parallel), so settings, ``USE`` and ``readonly`` apply to that
  request only and no request waits for another.

Run it::

    python -m aipulse_local.clickhouse_endpoint --data .aipulse/clickhouse/data \\
        --credentials .aipulse/clickhouse/credentials.json --port 8123
"""
from __future__ import annotations

import argparse
import base64
import email
import email.policy
import gzip
import hmac
import json
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

import chdb

from aipulse_stream.config import LocalStackConfig

from .credentials import CredentialsError, load_credentials
from .sql_guard import Guard, StatementRefused

log = logging.getLogger("aipulse.clickhouse_endpoint")

# URL parameters that are part of the HTTP interface, not query settings.
TRANSPORT_PARAMS = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check",
    "compress", "decompress", "user", "password", "query_id", "quota_key", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "enable_http_compression",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "http_zlib_compression_level",
    "role", "http_response_buffer_size", "readonly",
}
# The data starts right after the format name and one line break: binary data may itself start
# with bytes that look like whitespace (a Native block of 12 columns starts with 0x0C).
_INSERT_FORMAT = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+([A-Za-z0-9_]+)[ \t]*(?:\r?\n)?", re.I | re.S)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)
# Statements with a result set: a server names their format in X-ClickHouse-Format, and only
# theirs (clickhouse-connect's command() tells a result from a summary by it).
_RESULT_STATEMENT = re.compile(r"^(?:\s+|--[^\n]*\n|/\*.*?\*/|\()*(SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN|CHECK|VALUES|TABLE)\b",
                               re.I | re.S)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_SECRET_IN_URL = re.compile(r"(password|key|user)=[^&\s]*", re.I)
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
    """The chDB engine over one data folder; each request gets a connection of its own.

    Connections are cheap (about 0.15 ms to open and close, measured here) and chDB runs
    queries of different connections in parallel, so a request's ``SET``, ``USE`` and
    ``readonly`` die with its connection: nothing one request does reaches the next.
    """

    def __init__(self, path: str):
        self.path = path
        # Held open for the endpoint's life: the engine shuts down when its last connection closes.
        self._anchor = chdb.connect(path)
        self.version, self.timezone = self._anchor.query(
            "SELECT version(), serverTimezone()", "TSVRaw").bytes().decode().strip().split("\t")
        self.guard = Guard()

    def close(self) -> None:
        self._anchor.close()

    def run(self, sql: str | bytes, fmt: str, settings: dict, database: str | None, params: dict,
            insert_data: bytes | None, insert_format: str | None, insert_target: str | None,
            role: str = "writer", readonly: int = 0) -> tuple[bytes, dict]:
        # The reader's connection is born readonly=2 (per-query settings allowed, never writes,
        # DDL or a lower readonly); a writer's readonly is applied after the request's other
        # settings, as a server applies all URL settings at once.
        conn = chdb.connect(f"{self.path}?readonly=2" if role == "reader" else self.path)
        try:
            if database:
                conn.query(f"USE {_ident(database)}")
            statement = sql if insert_data is None else f"INSERT INTO {insert_target} FORMAT {insert_format}"
            self.guard.check(statement, lambda q, f: conn.query(q, f).bytes().decode("utf-8", "replace"))
            # All of the request's settings in ONE statement on its own connection (a SET per
            # setting cost a round trip through the engine each, for every query and insert).
            if settings:
                conn.query("SET " + ", ".join(f"{name} = {_literal(value)}" for name, value in settings.items()))
            if readonly and role != "reader":  # last: it would refuse the changes above
                conn.query(f"SET readonly = {readonly}")
            if insert_data is not None:
                ins = conn.send_insert(f"INSERT INTO {insert_target}", insert_format)
                if insert_data:
                    ins.append(insert_data)
                res = ins.finish()
                return b"", {"written_rows": str(res.rows_written), "written_bytes": str(res.bytes_written)}
            res = conn.query(sql, fmt, params=params or None)
            summary = {}
            try:
                summary = {"read_rows": str(res.rows_read()), "read_bytes": str(res.bytes_read()),
                           "written_rows": str(res.rows_written()), "written_bytes": str(res.bytes_written())}
            except Exception:  # the counters fail on some binary outputs: the summary is optional
                pass
            return res.bytes(), summary
        finally:
            conn.close()


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(value: str) -> str:
    # Quoted always (as clickhouse-connect's chDB backend does): ClickHouse coerces a quoted
    # literal to the setting's type, while a bare number would break String settings.
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def redact(text: str) -> str:
    """A request line fit for a log: passwords, keys and users in the URL replaced by ***."""
    return _SECRET_IN_URL.sub(lambda m: m.group(1) + "=***", text)


class Handler(BaseHTTPRequestHandler):
    server_version = "aipulse-chdb-endpoint"
    protocol_version = "HTTP/1.1"
    engine: Engine  # set on the subclass made by serve()
    users: dict[str, tuple[str, str]]  # user -> (password, role), set by serve()

    def log_message(self, fmt, *args):  # route http.server's stderr chatter to logging, without secrets
        log.debug("%s %s", self.address_string(), redact(fmt % args))

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

    def _authenticate(self, params: dict) -> str:
        """The request's role ("writer" or "reader"), or _HttpError 516 (ClickHouse's order of sources)."""
        user, password = "default", ""
        auth = self.headers.get("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
        if self.headers.get("X-ClickHouse-User") is not None:
            user, password = self.headers.get("X-ClickHouse-User", ""), self.headers.get("X-ClickHouse-Key", "")
        if "user" in params:
            user, password = params["user"], params.get("password", "")
        known = self.users.get(user)
        # compare_digest on every path: the time taken says nothing about the password.
        expected = known[0] if known else "\0" * 32
        if hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8")) and known:
            return known[1]
        raise _HttpError(403, "516", f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                         "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")

    def _handle(self) -> None:
        url = urlparse(self.path)
        if url.path in ("/ping",) or (url.path == "/" and not url.query and self.command == "GET"):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        base_headers = {
            "X-ClickHouse-Query-Id": query_id,
            # the engine's own zone (the host's), which naive DateTime values are read in
            "X-ClickHouse-Timezone": self.engine.timezone,
            "X-ClickHouse-Server-Display-Name": "aipulse-chdb-endpoint",
        }
        try:
            if self.headers.get("Origin") is not None:
                # A browser page (any site the developer visits) must not reach this endpoint.
                self.close_connection = True  # the body is not read: the connection cannot be reused
                raise _HttpError(403, "497", "Code: 497. DB::Exception: requests from a browser page (Origin header) "
                                 "are refused by the aipulse local endpoint. (ACCESS_DENIED)")
            try:
                role = self._authenticate(params)
            except _HttpError:
                self.close_connection = True
                raise
            body = self._read_body()
            body = _decode_body(body, self.headers.get("Content-Encoding"))
            content_type = self.headers.get("Content-Type") or ""
            if content_type.startswith("multipart/form-data"):
                # clickhouse-connect's form_encode_query_params: query and param_<name> as form fields
                fields, files = _form_fields(content_type, body)
                if files:
                    raise _HttpError(400, "48", "Code: 48. DB::Exception: external data tables are not supported "
                                     "by the aipulse local endpoint (use a ClickHouse server). (NOT_IMPLEMENTED)")
                params.update(fields)
                body = b""
            out, summary, fmt = self._run(params, body, role)
            headers = dict(base_headers)
            headers["X-ClickHouse-Summary"] = json.dumps(summary)
            if fmt:
                headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = "application/octet-stream" if fmt not in ("TabSeparated", "TSV") else "text/tab-separated-values; charset=UTF-8"
            self._reply(200, out, headers)
        except _HttpError as err:
            self._error(err.status, err.code, err.text, base_headers)
        except StatementRefused as err:
            self._error(_HTTP_STATUS_BY_CODE.get(err.code, 400), err.code, str(err), base_headers)
        except Exception as err:  # engine errors carry ClickHouse's own text and code
            text = str(err).strip() or type(err).__name__
            log.debug("query failed: %s: %s", redact(self.path), text.splitlines()[0][:300])
            idx = text.find("Code: ")
            text = text[idx:] if idx > 0 else text
            m = _ERROR_CODE.search(text)
            code = m.group(1) if m else "1002"
            if not m:
                text = f"Code: {code}. DB::Exception: {text}. (UNKNOWN_EXCEPTION)"
            self._error(_HTTP_STATUS_BY_CODE.get(code, 500), code, text, base_headers)

    def _run(self, params: dict, body: bytes, role: str) -> tuple[bytes, dict, str]:
        """(result bytes, summary, result format or "" for a statement without a result set)."""
        sql: str | bytes = params.get("query", "")
        insert_data = insert_format = insert_target = None
        if sql:
            m = _INSERT_FORMAT.match(sql)
            if m:
                insert_target, insert_format, insert_data = m.group(1), m.group(2), body
            elif body:
                sql = _text_or_bytes(sql.encode("utf-8") + b"\n" + body)
        else:
            m = _INSERT_FORMAT.match(body[:65536].decode("utf-8", errors="replace"))
            if m:
                head = m.group(0).encode("utf-8")
                insert_target, insert_format, insert_data = m.group(1), m.group(2), body[len(head):]
            else:
                sql = _text_or_bytes(body)
        if not sql.strip() and insert_data is None:
            raise _HttpError(400, "62", "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        settings = {
            k: v for k, v in params.items()
            if k not in TRANSPORT_PARAMS and not k.startswith("param_") and _SETTING_NAME.match(k)
        }
        readonly = _readonly_level(params.get("readonly"), role)
        if self.command == "GET" and not readonly:
            readonly = 2  # as on a ClickHouse server: a GET never writes
        qparams = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        fmt = params.get("default_format") or "TabSeparated"
        started = time.perf_counter()
        out, summary = self.engine.run(sql, fmt, settings, params.get("database"), qparams,
                                       insert_data, insert_format, insert_target, role=role, readonly=readonly)
        summary["elapsed_ns"] = str(int((time.perf_counter() - started) * 1e9))
        text = sql if isinstance(sql, str) else sql.decode("latin-1")
        _refuse_session_state(text)
        if insert_data is not None or not _RESULT_STATEMENT.match(text):
            return out, summary, ""
        m = _TRAILING_FORMAT.search(text)
        return out, summary, (m.group(1) if m else fmt)

    def _error(self, status: int, code: str, text: str, headers: dict) -> None:
        headers = dict(headers)
        headers["X-ClickHouse-Exception-Code"] = code
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        self._reply(status, (text + "\n").encode("utf-8", errors="replace"), headers)


# Statements whose whole effect is state kept for later requests of the same session.
_SESSION_STATE = re.compile(r"^(?:\s+|--[^\n]*\n|/\*.*?\*/)*(SET\s+(?!ROLE\b)|CREATE\s+(?:OR\s+REPLACE\s+)?TEMPORARY\s+TABLE\b)",
                            re.I | re.S)


def _refuse_session_state(sql: str) -> None:
    """Refuse, after it ran, a statement that only a session would keep (``SET x = 1``, ``CREATE
    TEMPORARY TABLE``): every request has a connection of its own here, so the next request of
    the same ``session_id`` would silently not see it; a ClickHouse server would. An error says
    what to do instead, rather than a success that does nothing.

    It runs after the engine so that what the engine refuses first (a reader's ``SET readonly = 0``:
    READONLY) keeps its own error; nothing of the statement outlives its connection either way."""
    m = _SESSION_STATE.match(sql)
    if not m:
        return
    what = "SET" if m.group(1).upper().startswith("SET") else "CREATE TEMPORARY TABLE"
    hint = ("pass the setting with each query (clickhouse-connect: settings={...})" if what == "SET"
            else "use a regular table, or a ClickHouse server")
    raise _HttpError(400, "48", f"Code: 48. DB::Exception: {what} would last for one request only: the aipulse "
                     f"local endpoint keeps no session state (session_id is accepted but each request runs on "
                     f"its own connection); {hint}. (NOT_IMPLEMENTED)")


def _form_fields(content_type: str, body: bytes) -> tuple[dict, dict]:
    """multipart/form-data -> ({field: text}, {file field: bytes})."""
    msg = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body,
                                   policy=email.policy.HTTP)
    fields, files = {}, {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        if part.get_filename():
            files[name] = data
        else:
            fields[name] = data.decode("utf-8")
    return fields, files


def _text_or_bytes(data: bytes) -> str | bytes:
    """SQL as text, or as the raw bytes when they are not UTF-8 (chDB takes both)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _readonly_level(value: str | None, role: str) -> int:
    """The request's readonly level (the reader's connection is readonly=2 whatever it asks)."""
    try:
        asked = int(value) if value not in (None, "") else 0
    except ValueError:
        raise _HttpError(400, "27", f"Code: 27. DB::Exception: Cannot parse readonly={value!r}: expected 0, 1 or 2. "
                         "(CANNOT_PARSE_INPUT_ASSERTION_FAILED)") from None
    if role == "reader":
        return 2
    return asked if asked in (1, 2) else 0


class _HttpError(Exception):
    def __init__(self, status: int, code: str, text: str):
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


def serve(data: str, host: str, port: int, credentials: str) -> ThreadingHTTPServer:
    users = load_credentials(credentials).users()
    engine = Engine(data)
    handler = type("BoundHandler", (Handler,), {"engine": engine, "users": users})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.engine = engine  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ClickHouse HTTP protocol in front of chDB (development only)")
    ap.add_argument("--data", required=True, help="chDB data folder (owned by this process)")
    ap.add_argument("--credentials", required=True, help="the stack's credentials file (made by `aipulse up`, 0600)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if LocalStackConfig.from_env().debug else logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        server = serve(args.data, args.host, args.port, args.credentials)
    except CredentialsError as err:
        print(f"aipulse clickhouse endpoint: {err}", file=sys.stderr)
        return 2
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

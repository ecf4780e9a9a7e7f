"""The local ClickHouse endpoint lets no one in: its own endpoint process, real chDB, clickhouse-connect.

One endpoint per module (a temporary data folder, a free port on 127.0.0.1), stopped by pid
at the end. Each test talks to it exactly as the worker, the CLI and Grafana's plugin do.
"""
from __future__ import annotations

import base64
import os
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from aipulse_local.clickhouse import start_clickhouse
from aipulse_local.process import stop_pid
from aipulse_stream.storage.clickhouse import client_for_url
from support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    home = tmp_path_factory.mktemp("endpoint-home")
    before = os.environ.get("AIPULSE_DEBUG")
    os.environ["AIPULSE_DEBUG"] = "1"  # the endpoint logs every request line: the log test reads them
    try:
        ch = start_clickhouse(home / "clickhouse" / "data")
    finally:
        if before is None:
            os.environ.pop("AIPULSE_DEBUG")
        else:
            os.environ["AIPULSE_DEBUG"] = before
    try:
        yield ch
    finally:
        stop_pid(ch.pid)


@pytest.fixture(scope="module")
def writer(endpoint):
    client = client_for_url(endpoint.credentials.url(endpoint.address))
    client.command("CREATE DATABASE IF NOT EXISTS sec")
    client.command("CREATE TABLE IF NOT EXISTS sec.t (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
    yield client
    client.close()


@pytest.fixture(scope="module")
def reader(endpoint, writer):
    client = client_for_url(endpoint.credentials.url(endpoint.address, role="reader"))
    yield client
    client.close()


def _post(endpoint, sql: str, headers: dict | None = None, params: str = "") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"{endpoint.url}/{params}", data=sql.encode(), method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _raise_unless_ok(reply: tuple[int, dict, bytes]) -> None:
    status, _, body = reply
    if status != 200:
        raise DatabaseError(body.decode(errors="replace"))


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_credentials_file_is_owner_only_and_reused(endpoint, tmp_path):
    path = endpoint.log.parent / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700  # the data folder beside it too
    from aipulse_local.credentials import ensure_credentials

    assert ensure_credentials(path) == endpoint.credentials  # a restart keeps the stack's users
    assert len(endpoint.credentials.writer_password) >= 32
    assert endpoint.credentials.writer_password != endpoint.credentials.reader_password


def test_every_query_without_the_credential_is_refused(endpoint, writer):
    creds = endpoint.credentials
    attempts = {
        "no user": {},
        "default user": _basic("default", ""),
        "wrong password": _basic(creds.writer_user, creds.writer_password + "x"),
        "reader password for writer": _basic(creds.writer_user, creds.reader_password),
        "header wrong key": {"X-ClickHouse-User": creds.writer_user, "X-ClickHouse-Key": "nope"},
    }
    for what, headers in attempts.items():
        for sql in ("SELECT 1", "INSERT INTO sec.t VALUES (9, 'x')", "DROP TABLE sec.t"):
            status, hdrs, body = _post(endpoint, sql, headers)
            assert status == 403, (what, sql, status, body)
            assert hdrs["X-ClickHouse-Exception-Code"] == "516", (what, sql)
            assert b"AUTHENTICATION_FAILED" in body
    q = urllib.parse.urlencode({"query": "SELECT 1", "user": creds.writer_user, "password": "guess"})
    assert _post(endpoint, "", params="?" + q)[0] == 403
    # clickhouse-connect with a wrong password fails with the server's code, as against ClickHouse
    with pytest.raises(Exception) as err:
        client_for_url(f"http://{creds.writer_user}:wrong@{endpoint.address}").query("SELECT 1")
    assert "516" in str(err.value) or "AUTHENTICATION_FAILED" in str(err.value)
    assert writer.command("SELECT count() FROM sec.t") >= 0  # nothing was inserted or dropped
    assert writer.command("EXISTS TABLE sec.t") == 1
    # the right credential by every route clickhouse-connect and scripts use
    assert _post(endpoint, "SELECT 7", _basic(creds.writer_user, creds.writer_password))[2].strip() == b"7"
    assert _post(endpoint, "SELECT 8", {"X-ClickHouse-User": creds.reader_user,
                                        "X-ClickHouse-Key": creds.reader_password})[2].strip() == b"8"
    q = urllib.parse.urlencode({"query": "SELECT 9", "user": creds.writer_user, "password": creds.writer_password})
    assert _post(endpoint, "", params="?" + q)[2].strip() == b"9"


def test_reader_cannot_insert_alter_or_drop(endpoint, writer, reader):
    writer.insert("sec.t", [[1, "a"]], column_names=["id", "s"])
    assert reader.query("SELECT count() FROM sec.t").result_rows[0][0] >= 1
    assert reader.query("SELECT getSetting('max_threads')", settings={"max_threads": 1}).result_rows == [(1,)]
    refused = [
        lambda: reader.insert("sec.t", [[2, "b"]], column_names=["id", "s"]),
        lambda: reader.command("INSERT INTO sec.t VALUES (3, 'c')"),
        lambda: reader.command("ALTER TABLE sec.t ADD COLUMN extra UInt8"),
        lambda: reader.command("ALTER TABLE sec.t DELETE WHERE 1"),
        lambda: reader.command("DROP TABLE sec.t"),
        lambda: reader.command("TRUNCATE TABLE sec.t"),
        lambda: reader.command("CREATE TABLE sec.r (x UInt8) ENGINE = Memory"),
        lambda: reader.command("SET readonly = 0"),
        lambda: reader.query("INSERT INTO sec.t SELECT 4, 'd' SETTINGS readonly = 0"),
        # (clickhouse-connect refuses settings={"readonly": 0} itself: try it over plain HTTP)
        lambda: _raise_unless_ok(_post(endpoint, "INSERT INTO sec.t VALUES (5, 'e')", _basic(
            endpoint.credentials.reader_user, endpoint.credentials.reader_password), params="?readonly=0")),
    ]
    for attempt in refused:
        with pytest.raises(DatabaseError) as err:
            attempt()
        assert "164" in str(err.value) or "READONLY" in str(err.value), str(err.value)[:300]
    assert writer.command("SELECT countIf(id IN (2, 3, 4, 5)) FROM sec.t") == 0
    assert "extra" not in [c[0] for c in writer.query("DESCRIBE TABLE sec.t").result_rows]
    assert writer.command("EXISTS TABLE sec.r") == 0


def test_reader_reads_what_dashboards_read(endpoint, writer, reader):
    """Readonly is not broken: the statements a dashboard or a script sends all pass."""
    writer.insert("sec.t", [[77, "seen"]], column_names=["id", "s"])
    assert reader.query("SELECT s FROM sec.t WHERE id = {i:UInt32}", parameters={"i": 77},
                        settings={"max_execution_time": 10, "max_result_rows": 1000}).result_rows[0] == ("seen",)
    assert "t" in [r[0] for r in reader.query("SHOW TABLES FROM sec").result_rows]
    assert [r[0] for r in reader.query("DESCRIBE TABLE sec.t").result_rows] == ["id", "s"]
    assert reader.command("EXISTS TABLE sec.t") == 1
    assert reader.query("SELECT name FROM system.columns WHERE database = 'sec' AND table = 't' ORDER BY name"
                        ).result_rows == [("id",), ("s",)]
    status, _, body = _post(endpoint, "SELECT count() FROM sec.t WHERE id = 77", _basic(
        endpoint.credentials.reader_user, endpoint.credentials.reader_password), params="?readonly=1")
    assert status == 200 and body.strip() == b"1"


@pytest.mark.parametrize("sql", [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:1/b/k', 'CSV')",
    "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "SELECT * FROM mysql('127.0.0.1:3306', 'd', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:5432', 'd', 't', 'u', 'p')",
    "SELECT * FROM executable('x.sh', 'CSV', 'a String')",
    "SELECT * FROM python('x')",
    "SELECT * FROM sec.t AS a JOIN file('/etc/passwd', 'LineAsString') AS b ON 1",
    "SELECT * FROM (SELECT * FROM FILE('/etc/passwd', 'LineAsString'))",
    "SELECT 1 INTO OUTFILE '{tmp}/out.txt'",
    "SELECT 1 INTO OUTFILE '{tmp}/out.txt' FORMAT TSV",
    "INSERT INTO FUNCTION file('{tmp}/out.txt', 'TSV') SELECT 1",
    "INSERT INTO FUNCTION file('{tmp}/out.txt', 'TSV') VALUES (1)",
    "INSERT INTO sec.t FROM INFILE '/etc/hostname' FORMAT TSV",
    "CREATE TABLE sec.f (x String) ENGINE = File(TSV, '{tmp}/out.txt')",
    "CREATE TABLE sec.u (x String) ENGINE = URL('http://127.0.0.1:1/', TSV)",
    "CREATE VIEW sec.v AS SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "CREATE DICTIONARY sec.d (a String) PRIMARY KEY a SOURCE(FILE(path '/etc/passwd' format 'TSV')) LAYOUT(FLAT()) LIFETIME(0)",
    "BACKUP TABLE sec.t TO File('{tmp}/b')",
    "CREATE TABLE sec.dk (x UInt8) ENGINE = MergeTree ORDER BY x SETTINGS disk = disk(type = local, path = '{tmp}/b/')",
    "DESCRIBE TABLE sec.t INTO OUTFILE '{tmp}/out.txt'",
    "SELECT 1; SELECT * FROM file('/etc/passwd', 'LineAsString')",
])
def test_reaching_files_urls_servers_or_programs_is_refused(endpoint, writer, reader, tmp_path, sql):
    sql = sql.format(tmp=tmp_path)
    for client in (writer, reader):
        with pytest.raises(DatabaseError) as err:
            client.command(sql)
        text = str(err.value)
        assert ("497" in text and "ACCESS_DENIED" in text) or ("62" in text and "Multi-statements" in text), text[:300]
    assert not (tmp_path / "out.txt").exists()
    assert not (tmp_path / "b").exists()


def test_sql_bytes_that_are_not_utf8_are_parsed_not_guessed(endpoint):
    """Binary literals reach the parser as sent: a word inside one refuses nothing, a call outside does."""
    auth = _basic(endpoint.credentials.writer_user, endpoint.credentials.writer_password)
    status, _, body = _post_bytes(endpoint, b"SELECT length('\xff python file( url( OUTFILE')", auth)
    assert (status, body.strip()) == (200, b"27"), body
    status, hdrs, body = _post_bytes(endpoint, b"SELECT '\xff' AS x, * FROM file('/etc/passwd', 'LineAsString')", auth)
    assert status == 403 and hdrs["X-ClickHouse-Exception-Code"] == "497", body


def _post_bytes(endpoint, sql: bytes, headers: dict) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(endpoint.url + "/", data=sql, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_local_queries_still_pass_the_guard(endpoint, writer):
    """The allow-lists leave the engine's own tables and generators alone."""
    assert writer.command("SELECT count() FROM numbers(10)") == 10
    assert writer.query("SELECT name FROM system.tables WHERE database = 'sec' AND name = 't'").result_rows == [("t",)]
    assert writer.query("SELECT {n:UInt32} + 1", parameters={"n": 41}).result_rows == [(42,)]
    assert writer.command("SELECT 'file(/etc/passwd) INTO OUTFILE'") == "file(/etc/passwd) INTO OUTFILE"
    writer.command("CREATE TABLE IF NOT EXISTS sec.m (x UInt8) ENGINE = ReplacingMergeTree ORDER BY x")
    writer.command("CREATE VIEW IF NOT EXISTS sec.mv AS SELECT x FROM sec.m")
    writer.command("DROP VIEW sec.mv")
    writer.command("DROP TABLE sec.m")


def test_readonly_request_does_not_leave_writes_broken(endpoint, writer):
    creds = endpoint.credentials
    marker = uuid.uuid4().int % 1_000_000 + 1000
    status, _, body = _post(endpoint, f"INSERT INTO sec.t VALUES ({marker}, 'ro')",
                            _basic(creds.writer_user, creds.writer_password), params="?readonly=1")
    assert status != 200 and b"READONLY" in body
    assert writer.query("SELECT 1", settings={"readonly": 1}).result_rows == [(1,)]
    for _ in range(3):  # every later request on every server thread can write again
        writer.insert("sec.t", [[marker, "after"]], column_names=["id", "s"])
    writer.command(f"INSERT INTO sec.t VALUES ({marker}, 'cmd')")
    assert writer.command(f"SELECT count() FROM sec.t WHERE id = {marker}") == 4
    # per-request settings and USE die with the request too
    assert writer.query("SELECT getSetting('max_threads')", settings={"max_threads": 1}).result_rows == [(1,)]
    assert writer.query("SELECT getSetting('max_threads')").result_rows != [(1,)]


def test_browser_origin_is_refused(endpoint):
    creds = endpoint.credentials
    for origin in ("https://evil.example", "null", "http://127.0.0.1:3000"):
        status, hdrs, body = _post(endpoint, "SELECT 1", {"Origin": origin, **_basic(creds.writer_user, creds.writer_password)})
        assert status == 403 and hdrs["X-ClickHouse-Exception-Code"] == "497", (origin, status, body)


def test_no_secret_reaches_the_log(endpoint, writer):
    creds = endpoint.credentials
    _post(endpoint, "SELEC 1", _basic(creds.writer_user, creds.writer_password))
    q = urllib.parse.urlencode({"query": "SELEC 2", "user": creds.writer_user, "password": creds.writer_password})
    _post(endpoint, "", params="?" + q)
    from aipulse_local.clickhouse_endpoint import redact

    assert creds.writer_password not in redact(f"GET /?{q} HTTP/1.1")
    text = wait_for(lambda: (t := endpoint.log.read_text()) and "password=***" in t and t,
                    timeout=10, what="the debug log line of the request")
    assert "query failed" in text  # the failed queries were logged, without their secrets
    for secret in (creds.writer_password, creds.reader_password, base64.b64encode(
            f"{creds.writer_user}:{creds.writer_password}".encode()).decode()):
        assert secret not in text


def test_query_id_format_and_summary_headers(endpoint):
    creds = endpoint.credentials
    qid = f"q-{uuid.uuid4().hex}"
    status, hdrs, body = _post(endpoint, "SELECT number FROM numbers(3) FORMAT JSONEachRow",
                               _basic(creds.writer_user, creds.writer_password), params=f"?query_id={qid}")
    assert status == 200 and body.count(b"\n") == 3
    assert hdrs["X-ClickHouse-Query-Id"] == qid
    assert hdrs["X-ClickHouse-Format"] == "JSONEachRow"
    assert "elapsed_ns" in hdrs["X-ClickHouse-Summary"]
    status, hdrs, _ = _post(endpoint, "DROP TABLE IF EXISTS sec.never_made", _basic(creds.writer_user, creds.writer_password))
    assert status == 200 and "X-ClickHouse-Format" not in hdrs  # no result set: no format, as on a server
    client = client_for_url(creds.url(endpoint.address))
    try:
        from clickhouse_connect.driver.summary import QuerySummary

        summary = client.command("DROP TABLE IF EXISTS sec.never_made")
        assert isinstance(summary, QuerySummary) and summary.query_id()
    finally:
        client.close()
    form = client_for_url(endpoint.credentials.url(endpoint.address), form_encode_query_params=True)
    try:
        assert form.query("SELECT {a:UInt8} + {b:UInt8}", parameters={"a": 40, "b": 2}).result_rows == [(42,)]
    finally:
        form.close()
    req = urllib.request.Request(endpoint.url + "/", data=b"SELECT length('\xff\xfe')", method="POST",
                                 headers=_basic(creds.writer_user, creds.writer_password))
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.read().strip() == b"2"


def test_queries_run_concurrently(endpoint, writer):
    """A query waits for no other: a quick one finishes while a slow one is still running.

    (Wall-clock, not CPU: the machine's load does not decide it. With the old global lock
    the quick query waited the slow one out.)
    """
    url = endpoint.credentials.url(endpoint.address)
    slow_client, quick_client = client_for_url(url), client_for_url(url)
    done = {}

    def slow():
        slow_client.command("SELECT sleep(3)")
        done["slow"] = time.perf_counter()

    try:
        th = threading.Thread(target=slow)
        t0 = time.perf_counter()
        th.start()
        time.sleep(0.5)  # the slow query is on the engine now
        assert quick_client.command("SELECT 41 + 1") == 42
        quick = time.perf_counter()
        th.join()
    finally:
        slow_client.close()
        quick_client.close()
    assert quick < done["slow"], "the quick query waited for the slow one"
    assert done["slow"] - t0 >= 2.9


# -- Faithful where clients rely on it (issue 12): what the endpoint cannot do is refused, never faked.

def test_session_state_is_refused_not_silently_dropped(writer):
    """A ClickHouse server keeps ``SET`` and temporary tables for the next request of the same
    session_id (clickhouse-connect sends one by default); here each request has its own
    connection, so both are refused with what to do instead. Per-query settings still work."""
    for statement in ("SET max_threads = 1", "  /* c */ set join_use_nulls = 1",
                      "CREATE TEMPORARY TABLE tmp_s (x UInt8)"):
        with pytest.raises(DatabaseError) as err:
            writer.command(statement)
        text = str(err.value)
        assert "Code: 48" in text and "keeps no session state" in text, text[:300]
    assert "settings={...}" in _refusal(writer, "SET max_threads = 1")
    assert writer.query("SELECT getSetting('max_threads')", settings={"max_threads": 3}).result_rows == [(3,)]
    assert writer.query("SELECT getSetting('max_threads')").result_rows != [(1,)]


def _refusal(client, statement: str) -> str:
    try:
        client.command(statement)
    except DatabaseError as err:
        return str(err)
    pytest.fail(f"{statement!r} was accepted")


def test_external_data_is_refused_with_a_clickhouse_error(writer):
    from clickhouse_connect.driver.external import ExternalData

    data = ExternalData(file_name="ids.csv", data=b"1\n2\n", fmt="CSV", structure=["id UInt32"])
    with pytest.raises(DatabaseError) as err:
        writer.query("SELECT count() FROM ids", external_data=data)
    text = str(err.value)
    assert "Code: 48" in text and "external data tables are not supported" in text, text[:300]
    assert writer.query("SELECT 1").result_rows == [(1,)]  # the connection is still good


def test_an_error_late_in_a_large_result_is_an_error_not_a_short_result(writer):
    sql = "SELECT number, throwIf(number = 999999, 'late failure') AS x FROM numbers(1000000)"
    for read in (lambda: writer.query(sql).result_rows, lambda: writer.query_df(sql),
                 lambda: list(writer.query_rows_stream(sql))):
        with pytest.raises(DatabaseError) as err:
            read()
        assert "late failure" in str(err.value) and "395" in str(err.value), str(err.value)[:300]
    assert len(writer.query("SELECT number FROM numbers(1000000)").result_rows) == 1000000

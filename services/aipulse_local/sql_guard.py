"""Refuse SQL that would reach past the data folder: files, URLs, other servers, programs.

The endpoint runs as the developer, so ``file()``, ``url()``, ``INSERT INTO FUNCTION file()``,
``INTO OUTFILE``, a ``File``/``URL`` table engine or a dictionary with a file source would read
or write any path (a write to a shell start-up file is code execution) or reach any host.
The check asks the engine's own parser (``parseQueryToJSON``, else ``EXPLAIN AST`` for the
statement kinds JSON does not cover) and walks the tree; where neither parser can answer,
a word-level scan refuses anything that merely looks like a reach-out (fails closed)::

    >>> check(conn, "SELECT * FROM file('/etc/passwd')")   # doctest: +SKIP
    Traceback (most recent call last):
    AccessRefused: Code: 497. DB::Exception: table function file reaches outside ... (ACCESS_DENIED)

Table functions and table engines are allow-listed (an unknown one is refused); scalar
functions that read files are deny-listed.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict

ALLOWED_TABLE_FUNCTIONS = frozenset(n.lower() for n in (
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generateRandom", "generateSeries", "generate_series",
    "primes", "values", "SQLStandardValues", "view", "viewIfPermitted", "viewExplain", "merge", "null",
    "input", "format", "loop", "dictionary", "mergeTreeIndex", "mergeTreeProjection",
    "mergeTreeAnalyzeIndexes", "mergeTreeAnalyzeIndexesUUID", "mergeTreeCodecBlockCounts", "mergeTreeTextIndex",
))
_LOCAL_ENGINES = ("Memory", "Log", "TinyLog", "StripeLog", "Null", "Buffer", "Set", "Join", "Merge",
                  "Dictionary", "View", "MaterializedView", "LiveView", "GenerateRandom")


def engine_allowed(name: str) -> bool:
    # MergeTree and its family (Replacing..., Aggregating..., Replicated...) keep data in the folder.
    return name.endswith("MergeTree") or name in _LOCAL_ENGINES


# Scalar functions that read a file or a model from disk.
DENIED_FUNCTIONS = frozenset({"file", "catboostevaluate"})
# Every name that reaches out, for the text parser and the word scan (no position known there).
REACH_OUT_NAMES = frozenset({
    "file", "filecluster", "filesystem", "url", "urlcluster", "s3", "s3cluster", "gcs", "cosn", "oss",
    "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql", "sqlite", "odbc",
    "jdbc", "mongodb", "redis", "executable", "executablepool", "hdfs", "hdfscluster", "azureblobstorage",
    "azureblobstoragecluster", "python", "bigquery", "ytsaurus", "arrowstream", "arrowflight",
    "prometheusquery", "prometheusqueryrange", "catboostevaluate", "kafka", "rabbitmq", "nats",
    "distributed", "materializedpostgresql", "materializedmysql", "hive", "fuzzquery",
    "disk",  # a table-level disk(type=local, path=...) writes anywhere
})
_REACH_OUT_PREFIXES = ("iceberg", "deltalake", "hudi", "paimon", "azure", "s3", "hdfs")
ALLOWED_SYSTEM = frozenset({"FLUSH_LOGS", "FLUSH_ASYNC_INSERT_QUEUE", "SYNC_REPLICA", "STOP_MERGES",
                            "START_MERGES", "STOP_TTL_MERGES", "START_TTL_MERGES", "DROP_MARK_CACHE",
                            "DROP_UNCOMPRESSED_CACHE", "DROP_QUERY_CACHE", "DROP_MMAP_CACHE"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE_CLAUSE = re.compile(r"\b(OUTFILE|INFILE)\b", re.I)
_CACHE_MAX = 4096  # statements already judged allowed (the worker repeats its inserts)
_CACHE_MAX_SQL = 16384  # longer statements are checked every time, not remembered


class StatementRefused(Exception):
    """A statement the endpoint refuses; str() is ClickHouse's error text, .code its code."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code


class AccessRefused(StatementRefused):
    """A statement that reaches outside the data folder (code 497 ACCESS_DENIED)."""

    def __init__(self, what: str):
        super().__init__("497", f"Code: 497. DB::Exception: {what} reaches outside the local data folder and is "
                         "refused by the aipulse local endpoint (use a ClickHouse server for that). (ACCESS_DENIED)")


def _reaches_out(name: str) -> bool:
    n = name.lower()
    return n in REACH_OUT_NAMES or n.startswith(_REACH_OUT_PREFIXES)


def check_tree(node, key: str = "") -> None:
    """Walk parseQueryToJSON's tree; raise AccessRefused at the first reach-out."""
    if isinstance(node, list):
        for child in node:
            check_tree(child, key)
        return
    if not isinstance(node, dict):
        return
    kind = str(node.get("type", ""))
    name = str(node.get("name", ""))
    if kind == "BackupQuery":
        raise AccessRefused(f"{node.get('kind', 'BACKUP')}")
    if kind == "SystemQuery" and node.get("query_type") not in ALLOWED_SYSTEM:
        raise AccessRefused(f"SYSTEM {node.get('query_type')}")
    if kind == "SetQuery":
        for change in node.get("changes") or []:
            value = change.get("value") if isinstance(change, dict) else None
            # An expression as a setting's value is a table-level disk(type = local, path = ...)
            if isinstance(value, dict) and value.get("field_type") == "CustomType":
                raise AccessRefused(f"setting {change.get('name')} = <expression>")
    if node.get("has_attach_from_path"):
        raise AccessRefused("ATTACH FROM a path")
    if "out_file" in node:
        raise AccessRefused("INTO OUTFILE")
    if "infile" in node:
        raise AccessRefused("FROM INFILE")
    if kind.startswith("Function"):
        if key == "table_function" and name.lower() not in ALLOWED_TABLE_FUNCTIONS:
            raise AccessRefused(f"table function {name}")
        if key == "engine" and not engine_allowed(name):
            raise AccessRefused(f"table engine {name}")
        # A dictionary may only read this engine's own tables (no host: no other server).
        if key == "source" and (name.lower() != "clickhouse" or "host" in json.dumps(node).lower()):
            raise AccessRefused(f"dictionary source {name}")
        if key != "engine" and (name.lower() in DENIED_FUNCTIONS or _reaches_out(name)):
            raise AccessRefused(f"function {name}")
    for k, v in node.items():
        check_tree(v, k)


def check_explain(text: str, sql: str) -> None:
    """Walk EXPLAIN AST's text tree (one node a line: "Function <name> (children n)")."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "Function" and (_reaches_out(parts[1]) or parts[1].lower() in DENIED_FUNCTIONS):
            raise AccessRefused(f"function {parts[1]}")
    if _FILE_CLAUSE.search(sql):  # the text tree does not label an OUTFILE literal: refuse the word
        raise AccessRefused("INTO OUTFILE / FROM INFILE")


def check_words(sql: str) -> None:
    """Last resort when no parser answers: any reach-out word refuses the statement."""
    for w in _WORD.findall(sql):
        if _reaches_out(w) or w.lower() in DENIED_FUNCTIONS:
            raise AccessRefused(f"{w}")
    if _FILE_CLAUSE.search(sql):
        raise AccessRefused("INTO OUTFILE / FROM INFILE")


class Guard:
    """Checks statements with the engine's parser on a connection the caller holds.

    `run(sql, fmt)` executes one statement on that connection (chdb's ``conn.query``).
    """

    def __init__(self):
        self._allowed: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, sql: str | bytes, run) -> None:
        with self._lock:
            if sql in self._allowed:
                self._allowed.move_to_end(sql)
                return
        self._check(sql.encode("utf-8") if isinstance(sql, str) else sql, run)
        if len(sql) <= _CACHE_MAX_SQL:
            with self._lock:
                self._allowed[sql] = None
                while len(self._allowed) > _CACHE_MAX:
                    self._allowed.popitem(last=False)

    def _check(self, raw: bytes, run) -> None:
        stripped = raw.strip().rstrip(b";")
        text = stripped.decode("latin-1")  # names and keywords are ASCII; literals may be any bytes
        try:
            # hex: any bytes (not UTF-8, quotes, backslashes) reach the parser exactly as sent
            tree = run(f"SELECT parseQueryToJSON(unhex('{stripped.hex()}'))", "TSVRaw")
        except Exception as err:
            json_error = str(err)
        else:
            check_tree(json.loads(tree))
            return
        if "Multi-statements" in json_error:  # a ClickHouse server refuses them too; chDB would run them all
            raise StatementRefused("62", "Code: 62. DB::Exception: Syntax error (Multi-statements are not allowed). (SYNTAX_ERROR)")
        if "Syntax error" in json_error or "SYNTAX_ERROR" in json_error:
            # The statement will fail with the same syntax error when run, unless the engine
            # reads it differently: refuse reach-out words anyway.
            check_words(text)
            return
        try:
            tree_text = run(b"EXPLAIN AST " + stripped, "TSVRaw")
        except Exception:
            check_words(text)  # no parser could read it: fail closed on the words
            return
        check_explain(tree_text, text)

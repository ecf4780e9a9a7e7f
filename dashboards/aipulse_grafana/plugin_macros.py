"""What Grafana and the ClickHouse plugin do to a panel's rawSql before ClickHouse sees it.

Used by the tests (and handy to paste a panel's query into clickhouse-client)::

    from aipulse_grafana.plugin_macros import Variable, render
    sql = render(raw_sql, start, end, interval_s=60,
                 variables=[Variable("feature", ["chat", "search"]), Variable("model", ALL)])

Order and rules, as the plugin (grafana/clickhouse-datasource) implements them:

1. Frontend, ``applyTemplateVariables``: ``$__conditionalAll(cond, $var)`` is replaced,
   last occurrence first, by ``1=1`` when the variable's current value is All (``$__all``)
   or empty, else by ``cond``; its two arguments are split at the first comma outside
   nested parentheses.
2. Grafana's template service replaces ``$var`` / ``${var}`` / ``${var:format}``; the plugin's
   default format joins a multi-value selection as ``'a','b'``; ``singlequote`` quotes each
   value (escaping ``'`` as ``\\'``) and joins with commas. All without a custom all-value
   means every option.
3. Backend, sqlds ``interpolate``: each macro ``$__name`` optionally followed by ``(args)``
   (regex ``\\$__name\\b(?:\\((.*?)\\))?``, args split on commas and trimmed):
   ``$__timeFilter(c)`` -> ``c >= toDateTime(from) AND c <= toDateTime(to)`` (unix seconds),
   ``$__timeFilter_ms``, ``$__fromTime``/``$__toTime`` -> ``toDateTime(s)``, ``_ms`` ->
   ``fromUnixTimestamp64Milli(ms)``, ``$__dateFilter``, ``$__timeInterval(c)`` ->
   ``toStartOfInterval(toDateTime(c), INTERVAL n second)``, ``$__interval_s`` -> n, with
   n = max(interval seconds, 1) truncated to an integer.
Alert rules skip steps 1-2 (no dashboard, no frontend): their SQL must not use variables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

ALL = "$__all"


@dataclass
class Variable:
    """A dashboard variable's current state: a value, a list (multi) or ALL."""

    name: str
    value: str | list[str]
    options: list[str] = field(default_factory=list)  # what All stands for

    def values(self) -> list[str]:
        if self.value == ALL or self.value == [ALL]:
            return list(self.options)
        return [self.value] if isinstance(self.value, str) else list(self.value)

    def current_text(self) -> str:
        """JS ``current.value.toString()``: arrays join with ','."""
        return ",".join(self.value) if isinstance(self.value, list) else self.value


def _macro_args(query: str, open_idx: int) -> list[str]:
    """Arguments of the macro whose '(' is at open_idx (the plugin's getMacroArgs)."""
    args, depth, last = [], 0, open_idx + 1
    for m in re.finditer(r"[(),]", query[open_idx:]):
        ch, pos = m.group(), open_idx + m.start()
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 1:
            args.append(query[last:pos])
            last = pos + 1
        if depth == 0:
            args.append(query[last:pos])
            return args
    return []


def apply_conditional_all(sql: str, variables: dict[str, Variable]) -> str:
    macro = "$__conditionalAll("
    idx = sql.rfind(macro)
    while idx != -1:
        params = _macro_args(sql, idx + len(macro) - 1)
        if len(params) != 2:
            return sql
        var = variables.get(params[1].strip()[1:])
        value = var.current_text() if var else ""  # JS: undefined?.toString() -> compare fails
        phrase = "1=1" if var is not None and value in ("", ALL) else params[0]
        sql = sql.replace(f"{macro}{params[0]},{params[1]})", phrase, 1)
        idx = sql.rfind(macro)
    return sql


def _format(values: list[str], fmt: str | None) -> str:
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt in ("csv", None) and len(values) == 1:
        return values[0]
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    # the plugin's own format function for multi values
    return "'" + "','".join(values) + "'"


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}")


def replace_variables(sql: str, variables: dict[str, Variable]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        var = variables.get(name)
        if var is None:  # not a variable (e.g. a $__ macro): Grafana leaves it
            return m.group(0)
        return _format(var.values(), m.group(3))

    return _VAR.sub(sub, sql)


def _dt(t: datetime) -> str:
    return f"toDateTime({int(t.timestamp() // 1)})"


def _dt64(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000 // 1)})"


def apply_macros(sql: str, start: datetime, end: datetime, interval_s: float) -> str:
    """The plugin's backend macros (pkg/macros) through sqlds' interpolate."""
    n = int(max(interval_s, 1))
    ms = int(max(interval_s * 1000, 1))

    def one_arg(name, args):
        if len(args) != 1 or args[0] == "":
            raise ValueError(f"$__{name} expects 1 argument, got {args}")
        return args[0]

    macros = {
        "fromTime": lambda a: _dt(start),
        "toTime": lambda a: _dt(end),
        "fromTime_ms": lambda a: _dt64(start),
        "toTime_ms": lambda a: _dt64(end),
        "timeFilter": lambda a: (lambda c: f"{c} >= {_dt(start)} AND {c} <= {_dt(end)}")(one_arg("timeFilter", a)),
        "timeFilter_ms": lambda a: (lambda c: f"{c} >= {_dt64(start)} AND {c} <= {_dt64(end)}")(
            one_arg("timeFilter_ms", a)),
        "dateFilter": lambda a: (lambda c: f"{c} >= toDate('{start:%Y-%m-%d}') AND {c} <= toDate('{end:%Y-%m-%d}')")(
            one_arg("dateFilter", a)),
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({one_arg('timeInterval', a)}), INTERVAL {n} second)",
        "timeInterval_ms": lambda a: (f"toStartOfInterval(toDateTime64({one_arg('timeInterval_ms', a)}, 3), "
                                      f"INTERVAL {ms} millisecond)"),
        "interval_s": lambda a: str(n),
    }
    for name, fn in macros.items():
        rx = re.compile(r"\$__" + name + r"\b(?:\((.*?)\))?")
        for m in rx.finditer(sql):
            args = [a.strip() for a in m.group(1).split(",")] if m.group(1) is not None else []
            sql = sql.replace(m.group(0), fn(args))
    return sql


def render(sql: str, start: datetime, end: datetime, interval_s: float = 60,
           variables: list[Variable] | None = None) -> str:
    """The SQL ClickHouse receives for a panel target (frontend, then backend steps)."""
    start, end = (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (start, end))
    by_name = {v.name: v for v in variables or []}
    sql = apply_conditional_all(sql, by_name)
    sql = replace_variables(sql, by_name)
    out = apply_macros(sql, start, end, interval_s)
    left = re.findall(r"\$\w+|\$\{[^}]*\}", out)
    if left:
        raise ValueError(f"unexpanded in query: {sorted(set(left))}")
    return out

"""What the read-side commands (``aipulse metrics``, ``report``, ``cost-model``) share:
the time range and ``--where`` arguments, and the one-line error contract.

    parser = argparse.ArgumentParser()
    add_time_range(parser, default_from="-7d")
    add_where(parser)
    args = parser.parse_args(["--from", "-2h", "--where", "feature=chat"])
    code, rows = guarded("metrics", lambda: query(*time_range(args), parse_where(args.where)),
                         usage_errors=(QueryError,))

``guarded`` prints ``aipulse <command>: <reason>`` on one line and returns 2 for a usage error
(the user's arguments) or 1 for anything else (ClickHouse down, a server error).
"""
from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timezone
from typing import Callable, TypeVar

from .query import QueryError
from .times import TimeArgError, parse_time

T = TypeVar("T")

# argparse takes "-15m" for an option unless it looks like a negative number; relative times
# are written that way (``--from -15m``), so teach the parser the form.
RELATIVE_ARG = re.compile(r"^-\d+(\.\d+)?[smhdw]?$")


def add_time_range(parser: argparse.ArgumentParser, default_from: str, default_to: str = "now",
                   from_help: str | None = None) -> None:
    """``--from``/``--to`` (dest ``start``/``end``), relative forms such as -30d accepted."""
    parser._negative_number_matcher = RELATIVE_ARG  # private, stable since Python 3.2
    parser.add_argument("--from", dest="start", default=default_from, metavar="T",
                        help=from_help or ("start: RFC 3339, epoch seconds, 'now' or relative like "
                                           f"-15m, -2h, -7d (default {default_from})"))
    parser.add_argument("--to", dest="end", default=default_to, metavar="T",
                        help=f"end (exclusive; default {default_to})")


def add_where(parser: argparse.ArgumentParser, dims_help: str = "a dimension") -> None:
    parser.add_argument("--where", action="append", default=[], metavar="DIM=VALUE",
                        help=f"keep only this value of {dims_help}; repeat (the same dim twice = either value)")


def time_range(args: argparse.Namespace, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end) as aware UTC datetimes; TimeArgError when unreadable or not increasing."""
    now = now or datetime.now(timezone.utc)
    start, end = parse_time(args.start, now), parse_time(args.end, now)
    if end <= start:
        raise TimeArgError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    return start, end


def parse_where(items: list[str]) -> dict[str, list[str]]:
    """``["feature=chat", "feature=search"]`` -> ``{"feature": ["chat", "search"]}``."""
    where: dict[str, list[str]] = {}
    for item in items:
        dim, sep, value = item.partition("=")
        if not sep:
            raise QueryError(f"--where {item!r} must be DIM=VALUE")
        where.setdefault(dim.strip(), []).append(value)
    return where


def one_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0][:300] if text else type(err).__name__


def guarded(command: str, fn: Callable[[], T], usage_errors: tuple[type[BaseException], ...] = ()
            ) -> tuple[int, T | None]:
    """Run ``fn``; on failure print one line to stderr and return (2 usage | 1 other, None)."""
    try:
        return 0, fn()
    except (QueryError, TimeArgError, *usage_errors) as err:
        print(f"aipulse {command}: {err}", file=sys.stderr)
        return 2, None
    except Exception as err:  # ClickHouseUnavailable or a server error: one readable line
        print(f"aipulse {command}: {one_line(err)}", file=sys.stderr)
        return 1, None

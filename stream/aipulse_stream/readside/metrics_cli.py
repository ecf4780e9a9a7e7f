"""``aipulse metrics``: merged figures per group, read from the window rows.

    aipulse metrics --group-by feature,model --from -1h --to now
    aipulse metrics --group-by variant --where feature=chat --from 2024-05-01T00:00:00Z --json
    aipulse metrics --ledger --from -1h [--where service=support] [--json]
    aipulse metrics --top-spenders --from -1h [--group-by service] [--where feature=chat] [--json]

The CLI module registers the subcommand with :func:`add_arguments` and calls :func:`run`.
Without ``--json`` a readable table (the most watched figures); with ``--json`` a list of
objects, one per group: the group's dims under their names and every figure under the
stable names of ``readside.query.FIGURES`` (rates and quantiles are null when undefined).
With ``--ledger``: the SDK's delivery ledger instead (:mod:`.ledger`), per service and
instance: emitted, sent, queued, lost before Kafka and why. With ``--top-spenders``: the
biggest spenders (:mod:`.spend_top`), merged over partitions and workers, each with the most
its figure may be short by (0 = exact); ``--group-by``/``--where`` take service and feature.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone

from ..config import Settings
from .ledger import ledger_query, render_ledger
from .spend_top import DEFAULT_LIMIT, render_spenders, top_spenders
from .query import DIMENSIONS, FIGURES, QueryError, metrics_query
from .times import TimeArgError, parse_time

DEFAULT_FROM = "-1h"
DEFAULT_TO = "now"
# (header, figure, format) of the table view: the figures an on-call reads first.
TABLE_COLUMNS = (
    ("requests", "requests", "{:d}"),
    ("err%", "error_rate", "pct"),
    ("fallb%", "fallback_rate", "pct"),
    ("escal%", "escalation_rate", "pct"),
    ("p50 ms", "latency_p50_ms", "{:.1f}"),
    ("p95 ms", "latency_p95_ms", "{:.1f}"),
    ("p99 ms", "latency_p99_ms", "{:.1f}"),
    ("cost $", "cost_usd", "{:.2f}"),
    ("tok in", "input_tokens", "{:d}"),
    ("tok out", "output_tokens", "{:d}"),
    ("sat% (up/down)", "satisfaction", "sat"),
    ("acc% (ok/eval)", "accuracy", "acc"),
    ("shadow dis%", "shadow_disagreement_rate", "pct"),
    ("late", "late", "{:d}"),
    ("orphaned", "orphaned", "{:d}"),
)


# argparse takes "-15m" for an option unless it looks like a negative number; relative
# times are written that way in the issue (``--from -15m``), so teach this parser the form.
_RELATIVE_ARG = re.compile(r"^-\d+(\.\d+)?[smhdw]?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = _RELATIVE_ARG  # private, stable since Python 3.2
    parser.add_argument("--group-by", default="", metavar="DIMS",
                        help=f"comma-separated dimensions among {', '.join(DIMENSIONS)} (default: one total)")
    parser.add_argument("--from", dest="start", default=DEFAULT_FROM, metavar="T",
                        help="start: RFC 3339, epoch seconds, 'now' or relative like -15m, -2h, -7d (default -1h)")
    parser.add_argument("--to", dest="end", default=DEFAULT_TO, metavar="T", help="end (exclusive; default now)")
    parser.add_argument("--where", action="append", default=[], metavar="DIM=VALUE",
                        help="keep only this value of a dimension; repeat (the same dim twice = either value)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects with stable names")
    parser.add_argument("--ledger", action="store_true",
                        help="the SDKs' delivery ledger per service and instance: events lost before Kafka, and why")
    parser.add_argument("--top-spenders", action="store_true",
                        help=f"the {DEFAULT_LIMIT} biggest spenders by user (per --group-by service/feature), "
                             "with the most each figure may be short by")
    parser.add_argument("--grain", choices=("auto", "window"), default="auto",
                        help="auto = read hourly/daily rollups for whole hours/days (same answer, cheaper)")


def _parse_where(items: list[str]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for item in items:
        dim, sep, value = item.partition("=")
        if not sep:
            raise QueryError(f"--where {item!r} must be DIM=VALUE")
        where.setdefault(dim.strip(), []).append(value)
    return where


def _fmt(row: dict, figure: str, fmt: str) -> str:
    v = row.get(figure)
    if fmt == "sat":
        return "-" if v is None else f"{100 * v:.1f} ({row['feedback_up']}/{row['feedback_down']})"
    if fmt == "acc":
        return "-" if v is None else f"{100 * v:.1f} ({row['correct']}/{row['evaluated']})"
    if v is None:
        return "-"
    if fmt == "pct":
        return f"{100 * v:.2f}"
    return fmt.format(v)


def render_table(rows: list[dict], group_by: list[str]) -> str:
    headers = [*group_by, *(h for h, _, _ in TABLE_COLUMNS)]
    body = [[str(r[d]) or "''" for d in group_by] + [_fmt(r, f, fmt) for _, f, fmt in TABLE_COLUMNS]
            for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(headers)]
    n_dims = len(group_by)

    def line(cells):
        return "  ".join(c.ljust(w) if i < n_dims else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(b) for b in body)])


def run(args: argparse.Namespace, settings: Settings, client=None, out=None) -> int:
    """Print the figures; 0 on success, 2 on a usage error, 1 when ClickHouse fails."""
    out = out or sys.stdout
    try:
        now = datetime.now(timezone.utc)
        start, end = parse_time(args.start, now), parse_time(args.end, now)
        if end <= start:
            raise QueryError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
        group_by = [d.strip() for d in args.group_by.split(",") if d.strip()]
        where = _parse_where(args.where)
        if client is None:
            from ..storage.clickhouse import connect

            client = connect(settings)
        if getattr(args, "top_spenders", False):
            try:
                rows = top_spenders(client, settings, start, end, where, by=group_by)
            except ValueError as err:
                raise QueryError(str(err)) from None
        elif getattr(args, "ledger", False):
            try:
                rows = ledger_query(client, settings, start, end, where)
            except ValueError as err:
                raise QueryError(str(err)) from None
        else:
            rows = metrics_query(client, settings, group_by, start, end, where, grain=args.grain)
    except (QueryError, TimeArgError) as err:
        print(f"aipulse metrics: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # ClickHouseUnavailable or a server error: one readable line
        print(f"aipulse metrics: {str(err).splitlines()[0][:300] if str(err) else type(err).__name__}",
              file=sys.stderr)
        return 1
    if args.json:
        json.dump(rows, out, indent=2, allow_nan=False, default=str)
        out.write("\n")
    elif getattr(args, "top_spenders", False):
        print(render_spenders(rows, group_by), file=out)
    elif getattr(args, "ledger", False):
        print(render_ledger(rows), file=out)
    elif not rows:
        print(f"no window rows between {start.isoformat()} and {end.isoformat()}", file=out)
    else:
        print(render_table(rows, group_by), file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m aipulse_stream.readside.metrics_cli``)."""
    parser = argparse.ArgumentParser(prog="aipulse metrics", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), Settings.from_env())


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["add_arguments", "run", "render_table", "FIGURES"]

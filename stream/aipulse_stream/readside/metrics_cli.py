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
import sys

from ..config import Settings
from ..storage.clickhouse import connect
from .cli_args import add_time_range, add_where, guarded, parse_where, time_range
from .ledger import ledger_query, render_ledger
from .spend_top import DEFAULT_LIMIT, render_spenders, top_spenders
from .query import DIMENSIONS, FIGURES, QueryError, metrics_query

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
    ("unpriced", "unpriced_requests", "{:d}"),  # calls with tokens but no price: cost $ misses them
    ("tok in", "input_tokens", "{:d}"),
    ("tok out", "output_tokens", "{:d}"),
    ("sat% (up/down)", "satisfaction", "sat"),
    ("acc% (ok/eval)", "accuracy", "acc"),
    ("shadow dis%", "shadow_disagreement_rate", "pct"),
    ("late", "late", "{:d}"),
    ("orphaned", "orphaned", "{:d}"),
)



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group-by", default="", metavar="DIMS",
                        help=f"comma-separated dimensions among {', '.join(DIMENSIONS)} (default: one total)")
    add_time_range(parser, DEFAULT_FROM, DEFAULT_TO)
    add_where(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects with stable names")
    parser.add_argument("--ledger", action="store_true",
                        help="the SDKs' delivery ledger per service and instance: events lost before Kafka, and why")
    parser.add_argument("--top-spenders", action="store_true",
                        help=f"the {DEFAULT_LIMIT} biggest spenders by user (per --group-by service/feature), "
                             "with the most each figure may be short by")
    parser.add_argument("--grain", choices=("auto", "window"), default="auto",
                        help="auto = read hourly/daily rollups for whole hours/days (same answer, cheaper)")


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
    group_by = [d.strip() for d in args.group_by.split(",") if d.strip()]
    ledger = getattr(args, "ledger", False)

    def read():
        start, end = time_range(args)
        where = parse_where(args.where)
        c = client or connect(settings)
        if getattr(args, "top_spenders", False):
            try:
                return start, end, top_spenders(c, settings, start, end, where, by=group_by)
            except ValueError as err:
                raise QueryError(str(err)) from None
        if ledger:
            try:
                return start, end, ledger_query(c, settings, start, end, where)
            except ValueError as err:
                raise QueryError(str(err)) from None
        return start, end, metrics_query(c, settings, group_by, start, end, where, grain=args.grain)

    code, result = guarded("metrics", read)
    if code:
        return code
    start, end, rows = result
    if args.json:
        json.dump(rows, out, indent=2, allow_nan=False, default=str)
        out.write("\n")
    elif getattr(args, "top_spenders", False):
        print(render_spenders(rows, group_by), file=out)
    elif ledger:
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

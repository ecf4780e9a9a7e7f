"""The `aipulse` command: the local stack, schema, migrations, metrics and the demo.

    aipulse up | down | status [--json]
    aipulse migrate [--cluster NAME] [--print]
    aipulse schema
    aipulse metrics --group-by feature,model --from -15m [--where model=gpt-4o] [--json]
    aipulse report --from -30d --to now --out review.html
    aipulse cost-model --volume 10000/day [--feature F] [--ceiling USD] [--json]
    aipulse demo [--out DIR] [--speed N] [--seconds 300]

Errors are one line on stderr saying what to do, and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, Settings


def _progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def cmd_up(args, settings: Settings) -> int:
    from aipulse_local.stack import up

    st = up(settings, progress=_progress, worker=not args.no_worker)
    print(json.dumps(st, indent=2) if args.json else _status_table(st))
    return 0 if all(c["healthy"] for c in st.values()) else 1


def cmd_down(args, settings: Settings) -> int:
    from aipulse_local.stack import down

    down(settings, progress=_progress)
    return 0


def cmd_status(args, settings: Settings) -> int:
    from aipulse_local.stack import status

    st = status(settings)
    print(json.dumps(st, indent=2) if args.json else _status_table(st))
    return 0 if st and all(c["healthy"] for c in st.values()) else 1


def _status_table(st: dict) -> str:
    if not st:
        return "nothing is running (start the local stack with `aipulse up`)"
    lines = [f"{'component':<14}{'pid':>8}  {'healthy':<8} address"]
    for name, c in st.items():
        lines.append(f"{name:<14}{str(c.get('pid') or '-'):>8}  {'yes' if c['healthy'] else 'NO':<8} {c.get('address', '')}")
    return "\n".join(lines)


def cmd_migrate(args, settings: Settings) -> int:
    from .storage.clickhouse import connect
    from .storage.migrations import migrate, plan

    if args.print:
        print(";\n\n".join(s for m in plan(settings, args.cluster) for s in m.statements) + ";")
        return 0
    applied = migrate(connect(settings), settings, cluster=args.cluster)
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


def cmd_schema(args, settings: Settings) -> int:
    from aipulse.contract import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from .demo import run

    return run(args, settings)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="aipulse", description="Streaming observability for AI features in production.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start the local stack (Kafka, ClickHouse endpoint, worker)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-worker", action="store_true", help="start the services only")
    p.set_defaults(fn=cmd_up)
    p = sub.add_parser("down", help="stop the local stack")
    p.set_defaults(fn=cmd_down)
    p = sub.add_parser("status", help="what runs, where, and whether it is healthy")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("migrate", help="apply ClickHouse schema migrations")
    p.add_argument("--cluster", metavar="NAME", help="ClickHouse cluster (remote_servers): Replicated + Distributed tables ON CLUSTER")
    p.add_argument("--print", action="store_true", help="print the DDL instead of applying it")
    p.set_defaults(fn=cmd_migrate)
    p = sub.add_parser("schema", help="print the event JSON Schema")
    p.set_defaults(fn=cmd_schema)
    p = sub.add_parser("demo", help="a support assistant on real-trace traffic, an incident, alerts, charts, dashboards")
    from .demo import add_arguments as demo_arguments

    demo_arguments(p)
    p.set_defaults(fn=cmd_demo)
    from .readside import metrics_cli

    p = sub.add_parser("metrics", help="windowed metrics per group, read from ClickHouse")
    metrics_cli.add_arguments(p)
    p.set_defaults(fn=metrics_cli.run)
    from .readside import cost_model, report

    p = sub.add_parser("report", help="the monthly review as one self-contained HTML file")
    report.add_arguments(p)
    p.set_defaults(fn=report.run)
    p = sub.add_parser("cost-model", help="projected daily and monthly cost at a request volume")
    cost_model.add_arguments(p)
    p.set_defaults(fn=cost_model.run)
    from aipulse_grafana import cli as grafana_cli

    p = sub.add_parser("grafana", help="Grafana provisioning: export the files or deploy to a running Grafana")
    grafana_cli.add_arguments(p)
    p.set_defaults(fn=grafana_cli.run)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.fn(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # one clear line, not a traceback wall
        from aipulse_local.process import StackError

        from .storage.clickhouse import ClickHouseUnavailable

        if isinstance(err, (ConfigError, StackError, ClickHouseUnavailable)):
            print(f"aipulse: {err}", file=sys.stderr)
            return 2
        if _is_connection_error(err):
            print(f"aipulse: {str(err).splitlines()[0][:300]} (is the stack up? `aipulse status`)", file=sys.stderr)
            return 2
        raise


def _is_connection_error(err: Exception) -> bool:
    name = type(err).__name__
    return isinstance(err, ConnectionError) or name in ("OperationalError", "NoBrokersAvailable")


if __name__ == "__main__":
    sys.exit(main())

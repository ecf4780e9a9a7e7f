"""``aipulse migrate [--cluster NAME] [--print]``: apply (or print) the ClickHouse migrations."""
from __future__ import annotations

import argparse

from aipulse_stream.config import ConfigError
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable, connect
from aipulse_stream.storage.migrations import migrate, plan

from ..endpoints import settings_from_env

ERRORS = (ConfigError, ClickHouseUnavailable)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", metavar="NAME",
                   help="ClickHouse cluster (remote_servers): Replicated + Distributed tables ON CLUSTER")
    p.add_argument("--print", action="store_true", help="print the DDL instead of applying it")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    if args.print:
        print(";\n\n".join(s for m in plan(settings, args.cluster) for s in m.statements) + ";")
        return 0
    applied = migrate(connect(settings), settings, cluster=args.cluster)
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0

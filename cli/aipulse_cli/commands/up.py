"""``aipulse up [--json] [--no-worker]``: start what of the local stack is not running yet."""
from __future__ import annotations

import argparse
import json
import sys

from aipulse_local.process import StackError
from aipulse_local.stack import up
from aipulse_stream.config import ConfigError, Settings
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

from .status import status_table

ERRORS = (ConfigError, StackError, ClickHouseUnavailable)


def progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.add_argument("--no-worker", action="store_true", help="start the services only")


def run(args: argparse.Namespace) -> int:
    st = up(Settings.from_env(), progress=progress, worker=not args.no_worker)
    print(json.dumps(st, indent=2) if args.json else status_table(st))
    return 0 if all(c["healthy"] for c in st.values()) else 1

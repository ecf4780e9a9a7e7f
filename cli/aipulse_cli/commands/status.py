"""``aipulse status [--json]``: what runs, where, and whether it is healthy (exit 1 if not)."""
from __future__ import annotations

import argparse
import json

from aipulse_local.process import StackError
from aipulse_local.stack import status
from aipulse_stream.config import ConfigError, Settings

ERRORS = (ConfigError, StackError)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="the state as JSON")


def run(args: argparse.Namespace) -> int:
    st = status(Settings.from_env())
    print(json.dumps(st, indent=2) if args.json else status_table(st))
    return 0 if st and all(c["healthy"] for c in st.values()) else 1


def status_table(st: dict) -> str:
    if not st:
        return "nothing is running (start the local stack with `aipulse up`)"
    lines = [f"{'component':<14}{'pid':>8}  {'healthy':<8} address"]
    for name, c in st.items():
        lines.append(f"{name:<14}{str(c.get('pid') or '-'):>8}  {'yes' if c['healthy'] else 'NO':<8} {c.get('address', '')}")
    return "\n".join(lines)

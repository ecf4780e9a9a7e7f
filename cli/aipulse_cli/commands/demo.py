"""``aipulse demo [--out DIR] [--speed N] [--seconds S] ...``: see :mod:`aipulse_stream.demo.run`."""
from __future__ import annotations

import argparse

from aipulse_local.process import StackError
from aipulse_stream import demo
from aipulse_stream.config import ConfigError, Settings
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

ERRORS = (ConfigError, StackError, ClickHouseUnavailable)

add_arguments = demo.add_arguments


def run(args: argparse.Namespace) -> int:
    return demo.run(args, Settings.from_env())

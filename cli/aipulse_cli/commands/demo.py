"""``aipulse demo [--out DIR] [--speed N] [--seconds S] ...``: see :mod:`aipulse_cli.demo.run`."""
from __future__ import annotations

import argparse

from aipulse_local.process import StackError
from aipulse_stream.config import ConfigError
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

from .. import demo
from ..endpoints import settings_from_env

ERRORS = (ConfigError, StackError, ClickHouseUnavailable)

add_arguments = demo.add_arguments


def run(args: argparse.Namespace) -> int:
    return demo.run(args, settings_from_env())

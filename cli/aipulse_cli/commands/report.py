"""``aipulse report ...``: see :mod:`aipulse_stream.readside.report`."""
from __future__ import annotations

import argparse

from aipulse_stream.config import ConfigError
from aipulse_stream.readside import report
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

from ..endpoints import settings_from_env

ERRORS = (ConfigError, ClickHouseUnavailable)

add_arguments = report.add_arguments


def run(args: argparse.Namespace) -> int:
    return report.run(args, settings_from_env())

"""``aipulse grafana export | deploy | render``: see :mod:`aipulse_grafana.cli`."""
from __future__ import annotations

import argparse

from aipulse_grafana import cli as grafana_cli
from aipulse_stream.config import ConfigError, Settings
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

ERRORS = (ConfigError, ClickHouseUnavailable)

add_arguments = grafana_cli.add_arguments


def run(args: argparse.Namespace) -> int:
    return grafana_cli.run(args, Settings.from_env())

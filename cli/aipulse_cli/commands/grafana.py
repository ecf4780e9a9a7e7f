"""``aipulse grafana export | deploy | render``: see :mod:`aipulse_grafana.cli`."""
from __future__ import annotations

import argparse

from aipulse_grafana import cli as grafana_cli
from aipulse_stream.config import ConfigError
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

from ..endpoints import settings_from_env

ERRORS = (ConfigError, ClickHouseUnavailable)

add_arguments = grafana_cli.add_arguments


def run(args: argparse.Namespace) -> int:
    return grafana_cli.run(args, settings_from_env())

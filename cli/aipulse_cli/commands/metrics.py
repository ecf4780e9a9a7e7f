"""``aipulse metrics --group-by ... --from ... [--where k=v] [--json]``: see
:mod:`aipulse_stream.readside.metrics_cli`."""
from __future__ import annotations

import argparse

from aipulse_stream.config import ConfigError
from aipulse_stream.readside import metrics_cli
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

from ..endpoints import settings_from_env

ERRORS = (ConfigError, ClickHouseUnavailable)

add_arguments = metrics_cli.add_arguments


def run(args: argparse.Namespace) -> int:
    return metrics_cli.run(args, settings_from_env())

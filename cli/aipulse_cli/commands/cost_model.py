"""``aipulse cost-model ...``: see :mod:`aipulse_stream.readside.cost_model`."""
from __future__ import annotations

import argparse

from aipulse_alerts.rules import load_rules
from aipulse_stream.config import ConfigError
from aipulse_stream.readside import cost_model
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

from ..endpoints import settings_from_env

ERRORS = (ConfigError, ClickHouseUnavailable)

add_arguments = cost_model.add_arguments


def configured_ceiling() -> float | None:
    """The monthly USD threshold of the cost run-rate rule, None when the rule is absent."""
    for rule in load_rules().rules:
        if rule.name == cost_model.CEILING_RULE:
            return float(rule.threshold)
    return None


def run(args: argparse.Namespace) -> int:
    return cost_model.run(args, settings_from_env(), default_ceiling=configured_ceiling())

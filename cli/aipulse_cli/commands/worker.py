"""``aipulse worker``: run one stream worker configured from the environment.

This is how docker-compose, a scaled-out deployment and the local stack start workers: every
replica runs ``aipulse worker`` with the same ``AIPULSE_*`` variables (several workers share the
consumer group ``AIPULSE_WORKER_GROUP`` and split the partitions)::

    AIPULSE_KAFKA_BOOTSTRAP=kafka:9092 AIPULSE_CLICKHOUSE_URL=http://clickhouse:8123 aipulse worker

This composition root wires the floors: the stream worker (aipulse_stream.worker) and the
alert evaluator (aipulse_alerts.evaluator), passed to the worker as a service it starts and
stops. Every worker runs an evaluator; Kafka elects the one that evaluates (docs/alerts.md), so
scaling out needs no extra process. ``AIPULSE_ALERTS=off`` leaves it out.

Endpoints come from configuration. Only when ``AIPULSE_KAFKA_BOOTSTRAP`` or
``AIPULSE_CLICKHOUSE_URL`` is unset does this root ask the local stack (``aipulse up``) where its
broker and endpoint run, and hand them to the worker as those variables; likewise
Alertmanager's address (with its credential) when ``AIPULSE_ALERTMANAGER_URL`` is unset, looked
up again while unknown (`aipulse up` starts Alertmanager after the worker). It runs in the
foreground until SIGTERM/SIGINT (Faust's graceful stop).
"""
from __future__ import annotations

import argparse
import os

from aipulse_alerts.evaluator import build_evaluator
from aipulse_alerts.rules import RulesError
from aipulse_stream import worker
from aipulse_stream.config import ConfigError, Settings

from ..endpoints import env_for

ERRORS = (ConfigError, RulesError)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Configured by AIPULSE_* variables (see the README's table): AIPULSE_KAFKA_BOOTSTRAP, "
                "AIPULSE_CLICKHOUSE_URL, AIPULSE_WORKER_GROUP, AIPULSE_WORKER_METRICS_PORT, "
                "AIPULSE_ALERTMANAGER_URL, AIPULSE_ALERT_RULES, AIPULSE_ALERTS=off, ...; "
                "unset endpoints are taken from the local stack (`aipulse up`).")


def run(args: argparse.Namespace) -> int:
    os.environ.update(env_for(Settings.from_env()))
    settings = Settings.from_env()
    services = []
    if settings.alerts:
        try:
            # Alertmanager's address: AIPULSE_ALERTMANAGER_URL, else the local stack's (env_for
            # above; `aipulse up` starts Alertmanager before the worker).
            services.append(build_evaluator(settings))
        except RulesError:
            raise
        except ValueError as err:  # a rule window that is not a multiple of the base window
            raise RulesError(f"{err} (AIPULSE_WINDOW_S={settings.window_s})") from None
    return worker.main([], services=services)

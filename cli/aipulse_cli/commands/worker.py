"""``aipulse worker``: run one stream worker configured from the environment.

This is how docker-compose and a scaled-out deployment start workers: every replica runs
``aipulse worker`` with the same ``AIPULSE_*`` variables (several workers share the consumer
group ``AIPULSE_WORKER_GROUP`` and split the partitions)::

    AIPULSE_KAFKA_BOOTSTRAP=kafka:9092 AIPULSE_CLICKHOUSE_URL=http://clickhouse:8123 aipulse worker

Endpoints come from configuration. Only when ``AIPULSE_KAFKA_BOOTSTRAP`` or
``AIPULSE_CLICKHOUSE_URL`` is unset does this composition root ask the local stack
(``aipulse up``) where its broker and endpoint run, and hand them to the worker as those
variables. It runs in the foreground until SIGTERM/SIGINT (Faust's graceful stop).
"""
from __future__ import annotations

import argparse
import os

from aipulse_stream import worker
from aipulse_stream.config import ConfigError, Settings

from ..endpoints import env_for

ERRORS = (ConfigError,)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Configured by AIPULSE_* variables (see the README's table): AIPULSE_KAFKA_BOOTSTRAP, "
                "AIPULSE_CLICKHOUSE_URL, AIPULSE_WORKER_GROUP, AIPULSE_WORKER_METRICS_PORT, ...; "
                "unset endpoints are taken from the local stack (`aipulse up`).")


def run(args: argparse.Namespace) -> int:
    os.environ.update(env_for(Settings.from_env()))
    return worker.main([])

"""Settings for a command: the environment, with the local stack's endpoints filled in.

Production code gets its endpoints from configuration (``AIPULSE_KAFKA_BOOTSTRAP``,
``AIPULSE_CLICKHOUSE_URL``, ``AIPULSE_ALERTMANAGER_URL``, ``AIPULSE_PROMETHEUS_URL``); only the local-stack
package reads its state file. This
composition root joins the two: when an endpoint is unset and ``aipulse up`` runs one, the
command gets that address, as if it had been configured::

    >>> settings = settings_from_env()          # doctest: +SKIP
    >>> settings.clickhouse_url                 # doctest: +SKIP
    'http://127.0.0.1:41234'
"""
from __future__ import annotations

from aipulse_local.process import StackError
from aipulse_local.stack import alertmanager_url, clickhouse_url, kafka_bootstrap, prometheus_url
from aipulse_stream.config import ENV_PREFIX, Settings

# Setting -> how the local stack answers for it (raises StackError when not running).
LOCAL = {"kafka_bootstrap": kafka_bootstrap, "clickhouse_url": clickhouse_url, "alertmanager_url": alertmanager_url,
         "prometheus_url": prometheus_url}


def local_endpoints(settings: Settings) -> dict[str, str]:
    """The unset endpoint settings the running local stack can answer, by field name."""
    found = {}
    for field, lookup in LOCAL.items():
        if getattr(settings, field):
            continue
        try:
            found[field] = lookup(settings)
        except StackError:  # not running: the code that needs it says which variable to set
            pass
    return found


def settings_from_env() -> Settings:
    settings = Settings.from_env()
    return settings.model_copy(update=local_endpoints(settings))


def env_for(settings: Settings) -> dict[str, str]:
    """``AIPULSE_*`` variables carrying the local endpoints, for a process that reads the environment."""
    return {ENV_PREFIX + field.upper(): value for field, value in local_endpoints(settings).items()}

"""Alertmanager in the local stack: Debian's prometheus-alertmanager on a free local port.

`aipulse up` calls :func:`start_if_available`; the component is recorded as
``alertmanager`` (pid, address, kind) so `aipulse status --json` shows it and the workers
find it. The configuration is generated (alerts/aipulse_alerts/amconfig.py) from the
AIPULSE_ALERT_* variables at start; :func:`reload` regenerates it and asks the running
Alertmanager to load it (``POST /-/reload``)::

    >>> info = start(settings, webhook_url="http://127.0.0.1:8099/hook")   # doctest: +SKIP
    >>> info["address"]                                                    # doctest: +SKIP
    '127.0.0.1:40123'

Clustering is off (``--cluster.listen-address=``): one local instance, and no second fixed
port (9094) to collide with.

Nothing is served without a credential: Alertmanager starts with ``--web.config.file``
holding the bcrypt hash (:mod:`aipulse_alerts.webconfig`) of a password generated once per
stack and kept, owner-only (0600), in ``<home>/web-password``. The recorded ``url`` carries
it (``http://aipulse:<password>@127.0.0.1:port``): the worker's notifier and
`aipulse status --json` use that.
"""
from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Callable

from aipulse_alerts import basic_auth
from aipulse_alerts.amconfig import receivers_from_env
from aipulse_alerts.amconfig import write as write_am_config

from . import authed_server
from .process import StackError
from .state import StackState, pid_alive

BINARY = "prometheus-alertmanager"
INSTALL_HINT = "install prometheus-alertmanager (apt-get install prometheus-alertmanager)"
PASSWORD_FILE = authed_server.PASSWORD_FILE  # where its password is kept (tests read it)


def binary() -> str | None:
    return shutil.which(BINARY) or shutil.which("alertmanager")


def _receiver(settings, webhook_url: str | None):
    receiver = receivers_from_env()
    url = webhook_url or settings.alert_webhook_url
    if url:
        receiver["webhook_configs"] = [{"url": url, "send_resolved": True}]
    return receiver


def write_config(settings, home: Path, webhook_url: str | None = None, **kwargs) -> Path:
    return write_am_config(home / "alertmanager.yml", _receiver(settings, webhook_url), **kwargs)


def healthy(url: str, timeout: float = 1.0) -> bool:
    """``GET /-/healthy`` with the credential carried by ``url``."""
    return authed_server.probe(url, "/-/healthy", timeout)


def start(settings, home: Path | None = None, webhook_url: str | None = None, port: int = 0,
          name: str = "alertmanager", record: bool = True, **config_kwargs) -> dict:
    """Start an Alertmanager (config and data under ``home``); return its component info."""
    exe = binary()
    if exe is None:
        raise StackError(INSTALL_HINT)
    home = Path(home or settings.state_dir / name)
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = write_config(settings, home, webhook_url, **config_kwargs)
    info = authed_server.launch(home, name, "alertmanager", "/-/healthy", lambda address, web: [
        exe, f"--config.file={cfg}", f"--web.config.file={web}", f"--storage.path={data}",
        f"--web.listen-address={address}", "--cluster.listen-address=", "--log.level=warn"], port=port)
    info["config"] = str(cfg)
    if record:
        StackState(settings.state_dir).put(name, **info)
    return info


def reload(settings, webhook_url: str | None = None, name: str = "alertmanager", **config_kwargs) -> None:
    """Regenerate the running Alertmanager's config (e.g. a new webhook URL) and reload it."""
    comp = StackState(settings.state_dir).get(name)
    if not comp:
        raise StackError(f"{name} is not running: start it with `aipulse up`")
    write_config(settings, Path(comp["config"]).parent, webhook_url, **config_kwargs)
    base = comp.get("url") or f"http://{comp['address']}"
    req = basic_auth.request(f"{base}/-/reload", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 200:
            raise StackError(f"{name} refused the new config (HTTP {r.status}); see {comp['log']}")


def start_if_available(settings, state: StackState, progress: Callable[[str], None]) -> dict | None:
    """`aipulse up`'s step: start Alertmanager unless running or not installed."""
    comp = state.get("alertmanager")
    if comp and pid_alive(comp.get("pid")):
        progress(f"alertmanager: already running at http://{comp['address']}")
        return comp
    if binary() is None:
        progress(f"alertmanager: not started: {INSTALL_HINT}")
        return None
    progress("alertmanager: starting...")
    info = start(settings)
    progress(f"alertmanager: up at http://{info['address']}")
    return info

"""Prometheus in the local stack: Debian's prometheus on a free local port, scraping the workers.

`aipulse up` calls :func:`start_if_available`; the component is recorded as ``prometheus``
(pid, address, url, kind) so `aipulse status --json` shows it and `aipulse grafana render`
(through cli/aipulse_cli/endpoints.py) draws the Pipeline board's panels from it::

    >>> info = start(settings)                 # doctest: +SKIP
    >>> info["address"]                        # doctest: +SKIP
    '127.0.0.1:40125'

What it scrapes comes from files it watches (``file_sd_configs``: a change is picked up within
seconds, no reload): ``targets/workers.json`` is rewritten from the stack's state whenever a
worker starts or stops (:func:`write_worker_targets`), and a process that serves metrics of its
own (the demo's simulated app, through the SDK's :mod:`aipulse.metrics`) adds itself with
:func:`add_target` and removes itself with :func:`remove_target`. The scrape interval is short
(:data:`SCRAPE_INTERVAL_S`) so that a demo of a few minutes draws many points; production
scrapes every 15 s (deploy/prometheus/prometheus.yml).

Nothing is served without a credential, as with Alertmanager: ``--web.config.file`` holds the
bcrypt hash (:mod:`aipulse_alerts.webconfig`) of a password generated once per stack and kept
owner-only (0600) in ``<home>/web-password``; the recorded ``url`` carries it
(``http://aipulse:<password>@127.0.0.1:port``). The workers' /metrics pages need none: they
listen on 127.0.0.1 and hold counters only (no events, no secrets).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from . import authed_server
from .process import StackError
from .state import StackState, same_process

BINARY = "prometheus"
INSTALL_HINT = "install prometheus (apt-get install prometheus)"
SCRAPE_INTERVAL_S = 2            # a few-minute demo gets ~100 points per series
RETENTION = "7d"                 # a development stack: a week of self-metrics is plenty
USER = authed_server.USER
CONFIG_FILE = "prometheus.yml"
TARGETS_DIR = "targets"
WORKERS_FILE = "workers.json"    # under TARGETS_DIR, rewritten from the stack's state
NAME = "prometheus"


def binary() -> str | None:
    return shutil.which(BINARY)


def home_of(settings) -> Path:
    return settings.state_dir / NAME


def config(home: Path, scrape_interval_s: int = SCRAPE_INTERVAL_S) -> dict:
    """The scrape configuration: the workers, the apps that added themselves, and Prometheus."""
    targets = Path(home) / TARGETS_DIR
    every = f"{scrape_interval_s}s"
    return {
        "global": {"scrape_interval": every, "scrape_timeout": every, "evaluation_interval": every},
        "scrape_configs": [
            {"job_name": "aipulse-worker", "file_sd_configs": [{"files": [str(targets / WORKERS_FILE)]}]},
            {"job_name": "aipulse-app", "file_sd_configs": [{"files": [str(targets / "app-*.json")]}]},
            # Itself, behind its own basic auth: `up{job="prometheus"}` shows the scrapes work.
            {"job_name": "prometheus", "basic_auth": {"username": USER, "password_file": str(Path(home) / authed_server.PASSWORD_FILE)},
             "static_configs": [{"targets": ["__SELF__"]}]},
        ],
    }


def _write_json(path: Path, data) -> None:
    """Atomic: Prometheus watches the folder and must never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def write_worker_targets(settings) -> Path:
    """``targets/workers.json`` from the stack's state: one target per recorded worker."""
    groups = [{"targets": [comp["address"]], "labels": {"component": name}}
              for name, comp in sorted(StackState(settings.state_dir).read().items())
              if comp.get("kind") == "worker" and comp.get("address")]
    path = home_of(settings) / TARGETS_DIR / WORKERS_FILE
    _write_json(path, groups)
    return path


def add_target(settings, name: str, address: str) -> Path:
    """Have the local Prometheus scrape ``http://address/metrics`` (job ``aipulse-app``) as ``name``."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"target name {name!r}: use letters, digits, '-' and '_' only")
    path = home_of(settings) / TARGETS_DIR / f"app-{name}.json"
    _write_json(path, [{"targets": [address], "labels": {"component": name}}])
    return path


def remove_target(settings, name: str) -> None:
    try:
        (home_of(settings) / TARGETS_DIR / f"app-{name}.json").unlink()
    except FileNotFoundError:
        pass


def ready(url: str, timeout: float = 1.0) -> bool:
    """``GET /-/ready`` with the credential carried by ``url``."""
    return authed_server.probe(url, "/-/ready", timeout)


def start(settings, port: int = 0, record: bool = True, scrape_interval_s: int = SCRAPE_INTERVAL_S) -> dict:
    """Start Prometheus (config, targets and data under ``<home>/prometheus``); return its component info."""
    exe = binary()
    if exe is None:
        raise StackError(INSTALL_HINT)
    home = home_of(settings)
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = home / CONFIG_FILE
    write_worker_targets(settings)

    def argv(address: str, web: Path) -> list[str]:
        # The config names the server's own address (it scrapes itself): known only now.
        text = yaml.safe_dump(config(home, scrape_interval_s), sort_keys=False).replace("__SELF__", address)
        cfg.write_text("# Generated by aipulse_local.prometheus at `aipulse up`.\n" + text)
        return [exe, f"--config.file={cfg}", f"--web.config.file={web}", f"--storage.tsdb.path={data}",
                f"--storage.tsdb.retention.time={RETENTION}", f"--web.listen-address={address}", "--log.level=warn"]

    info = authed_server.launch(home, NAME, "prometheus", "/-/ready", argv, port=port)
    info.update(config=str(cfg), scrape_interval_s=scrape_interval_s)
    if record:
        StackState(settings.state_dir).put(NAME, **info)
    return info


def running_url(settings) -> str | None:
    """The URL (with its credential) of this stack's Prometheus, or None when it does not run."""
    comp = StackState(settings.state_dir).get(NAME)
    return comp["url"] if comp and same_process(comp) and comp.get("url") else None


def start_if_available(settings, state: StackState, progress: Callable[[str], None]) -> dict | None:
    """`aipulse up`'s step: start Prometheus unless running or not installed."""
    comp = state.get(NAME)
    if comp and same_process(comp):
        write_worker_targets(settings)
        progress(f"prometheus: already running at http://{comp['address']}")
        return comp
    if binary() is None:
        progress(f"prometheus: not started (the Pipeline board's previews stay empty): {INSTALL_HINT}")
        return None
    progress("prometheus: starting...")
    info = start(settings)
    progress(f"prometheus: up at http://{info['address']}, scraping the workers every {info['scrape_interval_s']} s")
    return info

"""The local stack: `aipulse up`, `aipulse down`, `aipulse status`.

Starts what is not yet running (Kafka, the ClickHouse endpoint unless AIPULSE_CLICKHOUSE_URL
is set, one worker, Alertmanager and Prometheus when installed) and returns when each is
healthy; Prometheus scrapes every worker the stack records. State
lives in one git-ignored folder (AIPULSE_HOME, default ./.aipulse)::

    >>> from aipulse_local.stack import up, status, down        # doctest: +SKIP
    >>> up(Settings.from_env())                                  # doctest: +SKIP
    >>> status(Settings.from_env())["kafka"]["healthy"]          # doctest: +SKIP
    True
"""
from __future__ import annotations

import os
import sys
import time
import urllib.request
from typing import Callable

from aipulse_stream.config import EVENTS_TOPIC_CONFIG, Settings

from . import prometheus
from .alertmanager import healthy as alertmanager_healthy
from .clickhouse import ping, start_clickhouse
from .credentials import CredentialsError, credentials_path, load_credentials
from .kafka import _ready as kafka_ready
from .kafka import ensure_topics, start_kafka
from .process import StackError, free_port, spawn, stop_pid, wait_until
from .state import StackState, pid_alive, same_process

WORKER_START_TIMEOUT_S = 90
DLQ_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# Start order; stop is the reverse. Alertmanager before the worker, whose alerts it receives:
# the worker is handed its address (AIPULSE_ALERTMANAGER_URL) like Kafka's and ClickHouse's.
ORDER = ("kafka", "clickhouse", "alertmanager", "worker", "prometheus")

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def kafka_bootstrap(settings: Settings) -> str:
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    comp = StackState(settings.state_dir).get("kafka")
    if comp and pid_alive(comp.get("pid")):
        return comp["address"]
    raise StackError("Kafka is not running: start the local stack with `aipulse up` or set AIPULSE_KAFKA_BOOTSTRAP")


def clickhouse_url(settings: Settings) -> str:
    if settings.clickhouse_url:
        return settings.clickhouse_url
    comp = StackState(settings.state_dir).get("clickhouse")
    if comp and pid_alive(comp.get("pid")):
        return local_clickhouse_url(settings, comp["address"])
    raise StackError("ClickHouse is not running: start the local stack with `aipulse up` or set AIPULSE_CLICKHOUSE_URL")


def prometheus_url(settings: Settings) -> str:
    """The local Prometheus's URL (with its credential), for the dashboard previews."""
    url = prometheus.running_url(settings)
    if url:
        return url
    raise StackError("Prometheus is not running: install prometheus and run `aipulse up`, or set AIPULSE_PROMETHEUS_URL")


def alertmanager_url(settings: Settings) -> str:
    """The configured Alertmanager, else the local one's URL (its basic-auth credential included)."""
    if settings.alertmanager_url:
        return settings.alertmanager_url
    comp = StackState(settings.state_dir).get("alertmanager")
    if comp and pid_alive(comp.get("pid")) and comp.get("address"):
        return comp.get("url") or f"http://{comp['address']}"
    raise StackError("Alertmanager is not running: start the local stack with `aipulse up` or set AIPULSE_ALERTMANAGER_URL")


def local_clickhouse_url(settings: Settings, address: str, role: str = "writer") -> str:
    """The local endpoint's URL with the stack's user (from the 0600 credentials file)."""
    try:
        return load_credentials(credentials_path(settings.state_dir)).url(address, role)
    except CredentialsError as err:
        raise StackError(str(err)) from None


def worker_env(settings: Settings, metrics_port: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({
        "AIPULSE_HOME": str(settings.state_dir),
        "AIPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap(settings),
        "AIPULSE_CLICKHOUSE_URL": clickhouse_url(settings),
        "AIPULSE_WORKER_METRICS_PORT": str(metrics_port),
    })
    try:
        env["AIPULSE_ALERTMANAGER_URL"] = alertmanager_url(settings)
    except StackError:  # not installed or not started: the worker's alerts go to Kafka and ClickHouse only
        pass
    env.update(extra or {})
    return env


def worker_ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=1) as r:
            body = r.read().decode()
    except Exception:
        return False
    return "\naipulse_worker_ready 1.0" in body


def start_worker(settings: Settings, name: str = "worker", extra_env: dict | None = None) -> dict:
    """Start one worker process (several may share the consumer group) and wait until ready."""
    state = StackState(settings.state_dir)
    port = free_port()
    log_path = settings.state_dir / f"{name}.log"
    pid = spawn([sys.executable, "-m", "aipulse_cli", "worker"], log_path, env=worker_env(settings, port, extra_env))
    address = f"127.0.0.1:{port}"
    wait_until(lambda: worker_ready(address), WORKER_START_TIMEOUT_S, pid, f"the {name}", log_path)
    info = {"pid": pid, "address": address, "log": str(log_path), "kind": "worker"}
    state.put(name, **info)
    prometheus.write_worker_targets(settings)  # scraped from the next round on
    return info


def up(settings: Settings, progress: Progress = _quiet, worker: bool = True) -> dict:
    """Start whatever is not running (a recorded pid now held by another program is not ours); return status()."""
    home = settings.state_dir
    home.mkdir(parents=True, exist_ok=True)
    state = StackState(home)

    if settings.kafka_bootstrap:
        progress(f"kafka: using {settings.kafka_bootstrap} (AIPULSE_KAFKA_BOOTSTRAP)")
    else:
        comp = state.get("kafka")
        if comp and same_process(comp):
            progress(f"kafka: already running at {comp['address']}")
        else:
            progress("kafka: starting the broker (first run fetches its jars from Maven Central)...")
            k = start_kafka(home / "kafka", port=settings.kafka_port, partitions=settings.topic_partitions)
            state.put("kafka", pid=k.pid, address=k.bootstrap, log=str(k.log), kind="kafka")
            progress(f"kafka: up at {k.bootstrap}")
    ensure_topics(kafka_bootstrap(settings), {
        settings.topic: settings.topic_partitions,
        settings.dlq_topic: settings.topic_partitions,
        settings.alerts_topic: 1,
    }, configs={
        # A dead letter is the original message plus headers: give the DLQ room above the
        # broker's limit for the source topic so the original bytes always fit.
        settings.dlq_topic: {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
        settings.topic: EVENTS_TOPIC_CONFIG,  # records stamped by the broker (aipulse_stream.app)
    }, options=settings.kafka_security.client_options() if settings.kafka_bootstrap else None)  # an external broker's TLS/SASL

    if settings.clickhouse_url:
        progress("clickhouse: using AIPULSE_CLICKHOUSE_URL")
    else:
        comp = state.get("clickhouse")
        if comp and same_process(comp):
            progress(f"clickhouse: already running at {comp['address']}")
        else:
            progress("clickhouse: starting the local chDB endpoint...")
            c = start_clickhouse(home / "clickhouse" / "data", port=settings.clickhouse_port)
            state.put("clickhouse", **c.state())
            progress(f"clickhouse: up at {c.url}")

    from aipulse_stream.storage.clickhouse import client_for_url
    from aipulse_stream.storage.migrations import migrate

    client = client_for_url(clickhouse_url(settings))
    applied = migrate(client, settings)
    client.close()
    if applied:
        progress("clickhouse: applied migrations " + ", ".join(applied))

    try:
        from .alertmanager import start_if_available
    except ImportError:
        start_if_available = None
    if start_if_available is not None:
        start_if_available(settings, state, progress)
    if worker:
        comp = state.get("worker")
        if comp and same_process(comp):
            progress(f"worker: already running (pid {comp['pid']})")
        else:
            progress("worker: starting...")
            info = start_worker(settings)
            progress(f"worker: up (pid {info['pid']}, metrics http://{info['address']}/metrics)")

    prometheus.start_if_available(settings, state, progress)
    return status(settings)


def down(settings: Settings, progress: Progress = _quiet) -> None:
    """Stop every component this stack started (by its recorded pid), workers first."""
    state = StackState(settings.state_dir)
    names = list(state.read())
    names.sort(key=lambda n: -ORDER.index(n) if n in ORDER else -2.5)  # extra workers before kafka
    for name in names:
        comp = state.get(name) or {}
        if pid_alive(comp.get("pid")) and not same_process(comp):
            # The pid was recycled (or the entry predates recorded identities): not ours to signal.
            progress(f"{name}: pid {comp.get('pid')} is no longer the process this stack started: not signalled")
        elif stop_pid(comp.get("pid")):
            progress(f"{name}: stopped (pid {comp.get('pid')})")
        state.remove(name)


def stop_component(settings: Settings, name: str, kill: bool = False) -> int | None:
    """Stop one component (SIGKILL with kill=True); used by fault tests. Returns its pid."""
    import signal

    state = StackState(settings.state_dir)
    comp = state.get(name)
    if not comp:
        return None
    pid = comp.get("pid")
    if pid_alive(pid) and not same_process(comp):
        state.remove(name)
        return None
    if kill and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not pid_alive(pid):
                break
            time.sleep(0.05)
    else:
        stop_pid(pid)
    state.remove(name)
    if comp.get("kind") == "worker":
        prometheus.write_worker_targets(settings)
    return pid


def _healthy(name: str, comp: dict) -> bool:
    if not pid_alive(comp.get("pid")):
        return False
    kind = comp.get("kind", name)
    addr = comp.get("address", "")
    if kind == "kafka":
        return kafka_ready(addr)
    if kind == "clickhouse":
        return ping(f"http://{addr}")  # /ping needs no user, as on a ClickHouse server
    if kind == "worker":
        return worker_ready(addr)
    if kind == "alertmanager":   # behind basic auth: the recorded url carries the credential
        return alertmanager_healthy(comp.get("url") or f"http://{addr}")
    if kind == "prometheus":
        return prometheus.ready(comp.get("url") or f"http://{addr}")
    return True


def status(settings: Settings) -> dict:
    out = {}
    for name, comp in StackState(settings.state_dir).read().items():
        out[name] = {**comp, "healthy": _healthy(name, comp)}
        if comp.get("kind") == "clickhouse" and "url" not in comp:  # recorded by a restart that kept no URL
            try:
                out[name]["url"] = local_clickhouse_url(settings, comp["address"])
                out[name]["reader_url"] = local_clickhouse_url(settings, comp["address"], role="reader")
            except (StackError, KeyError):
                pass
    if settings.kafka_bootstrap and "kafka" not in out:
        out["kafka"] = {"pid": None, "address": settings.kafka_bootstrap, "external": True,
                        "healthy": kafka_ready(settings.kafka_bootstrap, settings.kafka_security.client_options())}
    if settings.clickhouse_url and "clickhouse" not in out:
        out["clickhouse"] = {"pid": None, "address": settings.clickhouse_url, "external": True,
                             "healthy": ping(settings.clickhouse_url)}
    return out

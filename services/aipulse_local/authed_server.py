"""A local server behind HTTP basic auth: the start sequence Alertmanager and Prometheus share.

Both are Go servers from Debian that read ``--web.config.file`` (the bcrypt hash of a password,
:mod:`aipulse_alerts.webconfig`) and answer a health path; nothing listens without that
credential. The password is generated once per server home and kept owner-only (0600) in
``<home>/web-password``; the returned ``url`` carries it::

    info = launch(home, "alertmanager", "alertmanager", "/-/healthy",
                  lambda address, web: [exe, f"--web.config.file={web}", f"--web.listen-address={address}"])
    info["url"]   # 'http://aipulse:<password>@127.0.0.1:40123'
"""
from __future__ import annotations

import os
import secrets
import urllib.request
from pathlib import Path
from typing import Callable

from aipulse_alerts import basic_auth, webconfig

from .process import free_port, spawn, wait_until

USER = webconfig.DEFAULT_USER
PASSWORD_FILE = "web-password"   # under the server's home, 0600
WEB_CONFIG_FILE = "web.yml"
START_TIMEOUT_S = 30


def stack_password(home: Path) -> str:
    """The password of the server in ``home``: read from there, or generated there (0600) once."""
    path = Path(home) / PASSWORD_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # owner-only from the first byte
    with os.fdopen(fd, "w") as f:
        f.write(password)
    return password


def probe(url: str, path: str, timeout: float = 1.0) -> bool:
    """``GET <url><path>`` with the credential carried by ``url``: True on a 2xx answer."""
    try:
        with urllib.request.urlopen(basic_auth.request(url.rstrip("/") + path), timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


def launch(home: Path, name: str, kind: str, health_path: str, argv: Callable[[str, Path], list[str]],
           port: int = 0, timeout_s: float = START_TIMEOUT_S) -> dict:
    """Start the server ``argv(address, web_config_path)`` describes, wait until ``health_path``
    answers, and return its component info (pid, address, url, log, web_config, kind)."""
    home = Path(home)
    password = stack_password(home)
    web = webconfig.write(home / WEB_CONFIG_FILE, USER, password)
    address = f"127.0.0.1:{port or free_port()}"
    url = f"http://{USER}:{password}@{address}"
    log_path = home / f"{name}.log"
    pid = spawn(argv(address, web), log_path)
    wait_until(lambda: probe(url, health_path), timeout_s, pid, name, log_path)
    return {"pid": pid, "address": address, "url": url, "log": str(log_path), "web_config": str(web), "kind": kind}

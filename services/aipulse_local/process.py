"""Start, probe and stop the local stack's processes: written once for every component.

Each component is a child process started detached (its own session, so a terminal's ^C
does not reach it), logging to a file under the state folder, recorded with its pid.
Stopping sends SIGTERM to that pid only, then SIGKILL after a grace period.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from .state import pid_alive


class StackError(RuntimeError):
    """A local-stack problem, worded as one line saying what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


def check_port_free(host: str, port: int, what: str, env_var: str) -> None:
    with socket.socket() as s:
        # SO_REUSEADDR as the servers themselves bind: a port in TIME_WAIT is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise StackError(
                f"port {host}:{port} for {what} is in use by another program: stop it or set {env_var} to another port"
            ) from None


def spawn(cmd: list[str], log_path: Path, env: dict | None = None, cwd: str | None = None) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )
    return proc.pid


def wait_until(check: Callable[[], bool], timeout: float, pid: int, what: str, log_path: Path,
               interval: float = 0.2) -> None:
    """Poll `check` until true; fail fast with the log's last line if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not pid_alive(pid):
            raise StackError(f"{what} exited during start-up: {last_line(log_path)} (full log: {log_path})")
        time.sleep(interval)
    raise StackError(f"{what} did not become healthy within {timeout:.0f}s: {last_line(log_path)} (log: {log_path})")


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    for ln in reversed(lines):  # prefer an error line over the last chatter
        if "ERROR" in ln or "Error" in ln or "error:" in ln or "Exception" in ln:
            return ln.strip()[:300]
    return lines[-1].strip()[:300] if lines else "(empty log)"


def stop_pid(pid: int | None, grace: float = 15.0) -> bool:
    """SIGTERM, wait, then SIGKILL. Only ever called with pids this stack started."""
    if not pid_alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return True
        _reap(pid)
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(50):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass

"""The local stack's state file: which component runs with which pid at which address.

One JSON file (``<home>/stack.json``, 0600: the ClickHouse entry's URL carries the stack's
credential) keyed by component name (kafka, clickhouse, worker, alertmanager, ...), so
`aipulse status --json` and scripts can find and signal them. Each pid is recorded with its
process's start time and command line, so `aipulse down` never signals a process that took
over a recycled pid::

    >>> st = StackState(Path(".aipulse"))                           # doctest: +SKIP
    >>> st.put("kafka", pid=123, address="127.0.0.1:9092", log="...")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

CMDLINE_WAIT_S = 5.0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def process_identity(pid: int | None) -> dict:
    """{"started": ..., "cmdline": ...} of a live pid ({} when it cannot be read).

    Linux: the start time in clock ticks since boot (/proc/<pid>/stat field 22) and the
    NUL-separated argv; elsewhere `ps`'s start time and command.
    """
    if not pid:
        return {}
    try:
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(") ", 1)[1].split()[19]  # after "(comm) " comes field 3: field 22 is [19]
        # A child caught between fork and exec has an empty command line for a moment:
        # wait for the one it will keep (the pid is recorded right after the spawn).
        deadline = time.monotonic() + CMDLINE_WAIT_S
        while True:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
            if cmdline or time.monotonic() > deadline or not pid_alive(pid):
                break
            time.sleep(0.01)
        return {"started": started, "cmdline": cmdline}
    except (OSError, IndexError):
        pass
    try:
        out = subprocess.run(["ps", "-o", "lstart=,command=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"started": out[:24].strip(), "cmdline": out[24:].strip()} if out else {}


def same_process(comp: dict) -> bool:
    """True when the recorded pid is alive and still the process that was recorded.

    An entry without a recorded identity (written by an older version) is not signalled:
    the pid may have been recycled by any program of the user's.
    """
    pid = comp.get("pid")
    if not pid_alive(pid) or "started" not in comp:
        return False
    now = process_identity(pid)
    return bool(now) and now.get("started") == comp.get("started") and now.get("cmdline") == comp.get("cmdline")


class StackState:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.path = self.home / "stack.json"

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, name: str) -> dict | None:
        return self.read().get(name)

    def _write(self, data: dict) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".stack.", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)  # atomic: readers never see half a file

    def put(self, name: str, **fields) -> None:
        """Record a component; a pid gets its start time and command line recorded with it."""
        if fields.get("pid") and "started" not in fields:
            fields.update(process_identity(fields["pid"]))
        data = self.read()
        data[name] = fields
        self._write(data)

    def remove(self, name: str) -> None:
        data = self.read()
        if data.pop(name, None) is not None:
            self._write(data)

"""The local stack's state file: which component runs with which pid at which address.

One JSON file (``<home>/stack.json``) keyed by component name (kafka, clickhouse, worker,
alertmanager, ...), so `aipulse status --json` and scripts can find and signal them::

    >>> st = StackState(Path(".aipulse"))                           # doctest: +SKIP
    >>> st.put("kafka", pid=123, address="127.0.0.1:9092", log="...")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


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
        data = self.read()
        data[name] = fields
        self._write(data)

    def remove(self, name: str) -> None:
        data = self.read()
        if data.pop(name, None) is not None:
            self._write(data)

"""The state folder's guards: `aipulse down` signals a recorded pid only while it is still the
process the stack started; the endpoint's credentials file must be owner-only."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aipulse_local.credentials import CredentialsError, ensure_credentials, load_credentials
from aipulse_local.process import stop_pid
from aipulse_local.stack import down
from aipulse_local.state import StackState, pid_alive, process_identity, same_process
from aipulse_stream.config import Settings


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_put_records_start_time_and_command_line(tmp_path):
    proc = _sleeper()
    try:
        StackState(tmp_path).put("worker", pid=proc.pid, address="127.0.0.1:1", kind="worker")
        comp = StackState(tmp_path).get("worker")
        assert comp["started"] and "time.sleep(120)" in comp["cmdline"]
        assert same_process(comp)
        assert not same_process({**comp, "started": str(int(comp["started"]) + 1)})
        assert not same_process({**comp, "cmdline": "something else"})
        assert not same_process({k: v for k, v in comp.items() if k not in ("started", "cmdline")})
    finally:
        proc.kill()
        proc.wait()


def test_down_leaves_a_recycled_pid_alone_and_stops_its_own(tmp_path):
    """A pid whose start time no longer matches (the pid was reused) is not signalled."""
    settings = Settings(home=tmp_path)
    stranger, ours = _sleeper(), _sleeper()
    try:
        state = StackState(tmp_path)
        identity = process_identity(stranger.pid)
        # what stack.json holds after the recorded process died and its pid went to another program
        state.put("alertmanager", pid=stranger.pid, address="127.0.0.1:1", kind="alertmanager",
                  started="1", cmdline=identity["cmdline"])
        state.put("worker", pid=ours.pid, address="127.0.0.1:2", kind="worker")
        said = []
        down(settings, progress=said.append)
        ours.wait(timeout=20)
        assert not pid_alive(ours.pid)
        assert stranger.poll() is None, "down signalled a process the stack did not start"
        assert any("not signalled" in m and "alertmanager" in m for m in said), said
        assert StackState(tmp_path).read() == {}
    finally:
        for p in (stranger, ours):
            stop_pid(p.pid, grace=2)


def test_credentials_readable_by_others_are_refused(tmp_path):
    """The endpoint will not start on a credentials file others can read (one line says the fix)."""
    path = tmp_path / "clickhouse" / "credentials.json"
    creds = ensure_credentials(path)
    assert load_credentials(path) == creds
    os.chmod(path, 0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        load_credentials(path)

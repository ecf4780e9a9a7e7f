"""Bad config or a missing service: one clear line saying what to do, exit status 2, no traceback."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def run_cli(args, env_extra, tmp_path, path=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPULSE_")}
    env["AIPULSE_HOME"] = str(tmp_path / "home")
    env.update(env_extra)
    if path is not None:
        env["PATH"] = path
    out = subprocess.run([sys.executable, "-m", "aipulse_cli", *args], capture_output=True, text=True,
                         env=env, timeout=120)
    return out.returncode, out.stdout, out.stderr


def assert_one_line(stderr: str, *words):
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("aipulse:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    for w in words:
        assert w in errors[0], errors[0]


def test_unreachable_clickhouse(tmp_path):
    rc, _, err = run_cli(["migrate"], {"AIPULSE_CLICKHOUSE_URL": "http://127.0.0.1:1"}, tmp_path)
    assert rc == 2
    assert_one_line(err, "cannot reach ClickHouse", "AIPULSE_CLICKHOUSE_URL")


def test_unreachable_broker(tmp_path):
    rc, _, err = run_cli(["up", "--no-worker"], {"AIPULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, tmp_path)
    assert rc == 2
    assert_one_line(err, "cannot reach Kafka", "AIPULSE_KAFKA_BOOTSTRAP")


def test_bad_setting(tmp_path):
    rc, _, err = run_cli(["status"], {"AIPULSE_TOPIC_PARTITIONS": "many"}, tmp_path)
    assert rc == 2
    assert_one_line(err, "AIPULSE_TOPIC_PARTITIONS")


def test_occupied_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, _, err = run_cli(["up", "--no-worker"], {"AIPULSE_KAFKA_PORT": str(port)}, tmp_path)
    assert rc == 2
    assert_one_line(err, f"127.0.0.1:{port}", "in use", "AIPULSE_KAFKA_PORT")


def test_missing_java(tmp_path):
    # A PATH with python but without java: the launcher names the package to install.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("mvn",):
        if shutil.which(tool):
            (bindir / tool).symlink_to(shutil.which(tool))
    rc, _, err = run_cli(["up", "--no-worker"], {}, tmp_path, path=str(bindir))
    assert rc == 2
    assert_one_line(err, "`java` is not installed", "apt-get install")


def test_nothing_running(tmp_path):
    rc, out, _ = run_cli(["status"], {}, tmp_path)
    assert rc == 1 and "aipulse up" in out

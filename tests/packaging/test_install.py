"""The distribution as a user gets it: built, installed into clean virtualenvs, then used.

    .venv/bin/python -m pytest -p no:cacheprovider -q -m packaging tests/packaging

Two installs, each in a fresh ``python -m venv`` (no test extras, nothing of the checkout on
``sys.path``; pip reuses its cache):

- ``aipulse`` (the SDK alone): at most ``SDK_MAX_MB`` of site-packages, ``import aipulse`` in at
  most ``IMPORT_MAX_MS`` and without loading any of ``SERVER_MODULES``; ``aipulse migrate``
  answers with one line naming ``aipulse[server]``.
- ``aipulse`` with the extras the Dockerfile installs (``[server]``): ``aipulse --help``,
  ``migrate --help``, ``worker --help``; ``aipulse up`` starts the local stack from the
  installed package alone (rules, migrations, Kafka pom are package data) and ``aipulse down``
  stops it.

The figures are printed (run with ``-s``): site-packages size, import time.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SDK_MAX_MB = 40
IMPORT_MAX_MS = 300
SERVER_MODULES = ("faust", "aiokafka", "chdb", "pandas", "pyarrow", "numpy", "clickhouse_connect")
# Package data a non-editable install cannot work without (path inside the wheel).
PACKAGE_DATA = (
    "aipulse_alerts/rules.yaml",
    "aipulse_local/pom.xml",
    "aipulse_stream/storage/migrations/001_raw_events.sql",
    "aipulse_cli/demo/data/azure-llm-trace-2023/conv.csv",
    "aipulse_cli/demo/data/azure-llm-trace-2023/code.csv",
    "aipulse_cli/demo/data/azure-llm-trace-2023/README.md",  # the trace's licence and attribution
)
# Test-only oracles stay out of the wheel.
NOT_SHIPPED = ("aipulse_stream/readside/exact.py", "aipulse_grafana/expressions.py")
PIP_TIMEOUT_S = 900


def _run(cmd, *, env=None, timeout=120, check=True, cwd=None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    if check and out.returncode != 0:
        raise AssertionError(f"{shlex.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def _clean_env(home: Path, **extra) -> dict:
    """The environment of a user's shell: no AIPULSE_* of the test session, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPULSE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["AIPULSE_HOME"] = str(home)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the working tree (tracked and new files, not caches), so
    stale build/ folders of the checkout cannot leak into it."""
    src = tmp_path_factory.mktemp("src")
    files = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], timeout=PIP_TIMEOUT_S)
    (whl,) = out.glob("aipulse-*.whl")
    return whl


def _venv(path: Path, requirement: str, *pip_args: str) -> Path:
    """A virtualenv holding ``requirement`` and its dependencies only: made without pip (whose
    17 MB and setuptools' 7 MB are the venv's, not ours), filled by this pip (``--python``)."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)], timeout=120)
    py = path / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", *pip_args, requirement], timeout=PIP_TIMEOUT_S)
    return py


def _site_packages(py: Path) -> Path:
    return Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


@pytest.fixture(scope="module")
def sdk_python(wheel, tmp_path_factory) -> Path:
    return _venv(tmp_path_factory.mktemp("venv-sdk"), str(wheel))


@pytest.fixture(scope="module")
def server_python(wheel, tmp_path_factory) -> Path:
    # The install: `pip install "aipulse[server]"`, no test extras. (The image installs a
    # narrower list, checked by tests/deploy/test_compose.py with the left-out packages hidden.)
    extras = ["server"]
    # --no-compile: byte-compiling pandas, matplotlib, faust... is most of the install's time;
    # the commands below compile what they import.
    return _venv(tmp_path_factory.mktemp("venv-server"), f"{wheel}[{','.join(extras)}]" if extras else str(wheel),
                 "--no-compile")


def test_wheel_carries_package_data_and_no_test_oracles(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in PACKAGE_DATA if p not in names]
    assert not missing, f"package data missing from {wheel.name}: {missing}"
    shipped = [p for p in NOT_SHIPPED if p in names]
    assert not shipped, f"test-only modules shipped in {wheel.name}: {shipped}"
    assert any(n.startswith("aipulse_cli/commands/") for n in names), "the aipulse command's package is missing"


def test_sdk_install_is_small(sdk_python):
    mb = _size_mb(_site_packages(sdk_python))
    print(f"\nSDK install: {mb:.1f} MB of site-packages (limit {SDK_MAX_MB} MB)")
    assert mb <= SDK_MAX_MB


def test_sdk_import_is_fast_and_light(sdk_python, tmp_path):
    # The limit holds the import's CPU time (process_time): on a machine shared by many jobs,
    # wall time measures the scheduler (seen here: 620 ms wall for 160 ms of CPU at load 13).
    probe = ("import sys, time; t, c = time.perf_counter(), time.process_time(); import aipulse; "
             "cpu, wall = (time.process_time() - c) * 1e3, (time.perf_counter() - t) * 1e3; "
             f"import json; print(json.dumps([cpu, wall, sorted(m for m in {SERVER_MODULES!r} if m in sys.modules)]))")
    runs = [json.loads(_run([str(sdk_python), "-c", probe], env=_clean_env(tmp_path), cwd=tmp_path).stdout)
            for _ in range(5)]
    cpu, wall = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"\nimport aipulse: best of 5 {cpu:.0f} ms CPU, {wall:.0f} ms wall (load {os.getloadavg()[0]:.1f}); "
          f"limit {IMPORT_MAX_MS} ms")
    assert all(not r[2] for r in runs), f"import aipulse loaded server modules: {runs[0][2]}"
    assert cpu <= IMPORT_MAX_MS
    # The server packages are not even installed.
    out = _run([str(sdk_python), "-c", f"import importlib.util as u; print([m for m in {SERVER_MODULES!r} if u.find_spec(m)])"],
               cwd=tmp_path)
    assert out.stdout.strip() == "[]", out.stdout


def test_sdk_install_cli_names_the_server_extra(sdk_python, tmp_path):
    aipulse = sdk_python.parent / "aipulse"
    env = _clean_env(tmp_path / "home")
    assert "migrate" in _run([str(aipulse), "--help"], env=env, cwd=tmp_path).stdout
    for command in (["migrate"], ["up"], ["worker", "--help"], ["grafana", "export"]):
        out = _run([str(aipulse), *command], env=env, cwd=tmp_path, check=False)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and 'pip install "aipulse[server]"' in lines[0], (command, out.stderr)
    # What needs only the SDK works.
    schema = json.loads(_run([str(aipulse), "schema"], env=env, cwd=tmp_path).stdout)
    assert schema


def test_server_install_commands(server_python, tmp_path):
    """What the Docker image (same install line) and a user of ``aipulse[server]`` run."""
    aipulse = server_python.parent / "aipulse"
    home = tmp_path / "home"
    # Reuse the checkout's Kafka jars when it has them (saves a Maven download; a fresh
    # install resolves them into the user's cache the same way).
    jars = ROOT / ".cache" / "kafka-jars"
    env = _clean_env(home, **({"AIPULSE_KAFKA_JARS": str(jars)} if jars.is_dir() else {}))
    for command, want in ((["--help"], "migrate"), (["migrate", "--help"], "--cluster"),
                          (["worker", "--help"], "AIPULSE_KAFKA_BOOTSTRAP"), (["grafana", "--help"], "export"),
                          (["demo", "--help"], "--seconds"), (["metrics", "--help"], "--group-by")):
        out = _run([str(aipulse), *command], env=env, cwd=tmp_path)
        assert want in out.stdout, (command, out.stdout)
    ddl = _run([str(aipulse), "migrate", "--print"], env=env, cwd=tmp_path).stdout
    assert "CREATE TABLE" in ddl
    # The packaged rule file loads (alerting does not silently turn off) and Grafana's files come from it.
    probe = "from aipulse_alerts.rules import load_rules; print(len(load_rules().rules))"
    assert int(_run([str(server_python), "-c", probe], env=env, cwd=tmp_path).stdout) > 0
    _run([str(aipulse), "grafana", "export", "--out", str(tmp_path / "prov")], env=env, cwd=tmp_path)
    assert "rules:" in (tmp_path / "prov" / "alerting" / "rules.yaml").read_text()
    try:
        up = _run([str(aipulse), "up", "--json"], env=env, cwd=tmp_path, timeout=300)
        st = json.loads(up.stdout)
        for name in ("kafka", "clickhouse", "worker"):
            assert st[name]["healthy"], (name, up.stdout, up.stderr)
        status = _run([str(aipulse), "status", "--json"], env=env, cwd=tmp_path)
        assert all(c["healthy"] for c in json.loads(status.stdout).values())
        # The installed worker applied the packaged migrations and loaded the packaged rules.
        applied = _run([str(aipulse), "migrate"], env=env, cwd=tmp_path).stdout
        assert applied.startswith("applied: nothing"), applied
    finally:
        _run([str(aipulse), "down"], env=env, cwd=tmp_path, timeout=120, check=False)
    status = _run([str(aipulse), "status", "--json"], env=env, cwd=tmp_path, check=False)
    assert status.returncode == 1 and not any(c["healthy"] for c in json.loads(status.stdout or "{}").values())


def test_dockerfile_copies_every_source_root_and_runs_aipulse():
    text = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    roots = re.search(r'where = \[([^\]]*)\]', pyproject).group(1)
    ignored = {ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert re.search(r"^COPY \. \.$", text, re.M), "the Dockerfile copies the build context"
    for root in re.findall(r'"([^"]+)"', roots):
        assert root not in ignored, f".dockerignore keeps {root}/ out of the image"
    assert re.search(r"pip install --no-deps \.", text), "the image installs the project itself"
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert cmd == ["aipulse", "worker"], cmd

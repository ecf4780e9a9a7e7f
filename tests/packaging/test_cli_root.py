"""The composition root: lazily loaded subcommands, each with add_arguments and run; a missing
server extra answered with one line (the fresh-venv version of these is test_install.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from aipulse_cli.main import COMMANDS, load

HEAVY = ("faust", "aiokafka", "chdb", "grafana_foundation_sdk", "matplotlib", "pandas", "pyarrow")


def _probe(argv: list[str], block: str | None = None) -> dict:
    """Run main(argv) in a fresh interpreter (optionally with module ``block`` made missing) in
    an empty AIPULSE_HOME; return its exit status, stderr lines and which heavy modules it loaded.
    Only commands that start nothing are probed."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        if {block!r}:
            class Block:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] == {block!r}:
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            sys.meta_path.insert(0, Block())
        from aipulse_cli.main import main
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main({argv!r})
            except SystemExit as e:
                rc = e.code
        print(json.dumps({{"rc": rc, "stderr": err.getvalue().splitlines(), "stdout": out.getvalue(),
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules],
                          "commands": sorted(m for m in sys.modules if m.startswith("aipulse_cli.commands."))}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPULSE_")}
    with tempfile.TemporaryDirectory(prefix="aipulse-cli-probe-") as home:
        env["AIPULSE_HOME"] = home
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_top_help_imports_no_subcommand():
    r = _probe(["--help"])
    assert r["rc"] == 0 and all(name in r["stdout"] for name in COMMANDS)
    assert r["commands"] == [] and r["heavy"] == []


@pytest.mark.parametrize("argv", [["migrate", "--help"], ["migrate", "--print"], ["schema"], ["status", "--help"]])
def test_light_commands_load_only_their_module(argv):
    r = _probe(argv)
    assert r["rc"] == 0, r["stderr"]
    assert r["commands"] == [f"aipulse_cli.commands.{argv[0]}"]
    assert r["heavy"] == [], f"aipulse {' '.join(argv)} imported {r['heavy']}"


@pytest.mark.parametrize("argv,block", [(["migrate"], "clickhouse_connect"), (["grafana", "export"], "grafana_foundation_sdk"),
                                        (["worker", "--help"], "faust"), (["metrics", "--help"], "clickhouse_connect")])
def test_missing_server_extra_is_one_line(argv, block):
    r = _probe(argv, block=block)
    assert r["rc"] == 2
    assert len(r["stderr"]) == 1, r["stderr"]
    assert 'pip install "aipulse[server]"' in r["stderr"][0] and block in r["stderr"][0]


def test_a_missing_own_module_is_a_bug_not_an_extra():
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "aipulse_stream.storage.migrations":
                    raise ModuleNotFoundError("gone", name=name)
        sys.meta_path.insert(0, Block())
        from aipulse_cli.main import main
        main(["migrate", "--print"])
    """)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" in r.stderr  # a broken install shows where


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_registered_command_has_the_protocol(name):
    mod = load(name)
    assert callable(mod.add_arguments) and callable(mod.run), name

"""``aipulse``: one command, subcommands loaded only when chosen.

    aipulse up | down | status [--json]
    aipulse migrate [--cluster NAME] [--print]
    aipulse schema
    aipulse metrics --group-by feature,model --from -15m [--where model=gpt-4o] [--json]
    aipulse report --from -30d --to now --out review.html
    aipulse cost-model --volume 10000/day [--feature F] [--ceiling USD] [--json]
    aipulse demo [--out DIR] [--speed N] [--seconds 300]
    aipulse grafana export | deploy | render
    aipulse replay --topic aipulse.events --from-time=-2h | --from-offset N [--to-...] [--partition P]
    aipulse worker

Why lazily: building the parser must not import Grafana's SDK, faust or chDB, so that
``aipulse migrate --help`` is fast and works in an image that has only what migrate needs, and
so that a plain SDK install (no server extra) answers with one line instead of a traceback.
``aipulse --help`` lists the commands from :data:`COMMANDS` without importing any of them;
``aipulse NAME ...`` imports ``aipulse_cli.commands.NAME`` alone.

Adding a subcommand (``report``, ``cost-model``, ...) is one module and one registry line:

1. ``cli/aipulse_cli/commands/report.py`` with two functions::

       def add_arguments(parser: argparse.ArgumentParser) -> None: ...
       def run(args: argparse.Namespace) -> int: ...          # the exit status

   and, optionally, ``ERRORS = (SomeError, ...)``: exceptions printed as one line
   ``aipulse report: <message>`` with exit status 2 (configuration and "is it running"
   mistakes); anything else is a bug and keeps its traceback.
2. one line in :data:`COMMANDS` below: ``"report": ("report", "monthly review ...")``.

Errors are one line on stderr saying what to do, and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# name -> (module under aipulse_cli.commands, one-line help). The order is the help's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("up", "start the local stack (Kafka, ClickHouse endpoint, worker)"),
    "down": ("down", "stop the local stack"),
    "status": ("status", "what runs, where, and whether it is healthy"),
    "migrate": ("migrate", "apply ClickHouse schema migrations"),
    "schema": ("schema", "print the event JSON Schema"),
    "metrics": ("metrics", "windowed metrics per group, read from ClickHouse"),
    "report": ("report", "the monthly review as one self-contained HTML file"),
    "cost-model": ("cost_model", "projected daily and monthly cost at a request volume"),
    "demo": ("demo", "a support assistant on real-trace traffic, an incident, alerts, charts, dashboards"),
    "grafana": ("grafana", "Grafana provisioning: export the files, deploy to a running Grafana, render previews"),
    "replay": ("replay", "re-feed a range of the events or dead-letter topic into ClickHouse, idempotently"),
    "worker": ("worker", "run one stream worker configured from AIPULSE_* (as compose and deployments start it)"),
}

# Top-level packages of this distribution: a missing one is a broken install, not a missing extra.
OWN_PACKAGES = ("aipulse", "aipulse_cli", "aipulse_stream", "aipulse_alerts", "aipulse_grafana", "aipulse_local")
SERVER_HINT = 'pip install "aipulse[server]"'


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (the first word that is not an option), if it is known."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _missing_extra(err: ModuleNotFoundError) -> str | None:
    """The name of a missing third-party module (a missing extra), else None."""
    root = (err.name or "").split(".")[0]
    return root if root and root not in OWN_PACKAGES else None


def _server_hint(command: str, err: ModuleNotFoundError) -> int:
    print(f"aipulse {command}: needs the server install: {SERVER_HINT} (missing module {_missing_extra(err)})",
          file=sys.stderr)
    return 2


def load(command: str):
    """Import the module of one subcommand (raises ModuleNotFoundError when an extra is missing)."""
    return importlib.import_module(f"{__package__}.commands.{COMMANDS[command][0]}")


def build_parser(command: str | None = None, module=None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s arguments are filled in (from ``module``)."""
    ap = argparse.ArgumentParser(prog="aipulse", description="Streaming observability for AI features in production.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command and module is not None:
            module.add_arguments(p)
    return ap


def _is_connection_error(err: Exception) -> bool:
    return isinstance(err, ConnectionError) or type(err).__name__ in ("OperationalError", "NoBrokersAvailable")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen(argv)
    module = None
    if command is not None:
        try:
            module = load(command)
        except ModuleNotFoundError as err:
            if _missing_extra(err) is None:
                raise
            return _server_hint(command, err)
    args = build_parser(command, module).parse_args(argv)
    try:
        return module.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aipulse migrate --print | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ModuleNotFoundError as err:  # an extra's module imported only once the command runs
        if _missing_extra(err) is None:
            raise
        return _server_hint(command, err)
    except Exception as err:  # one clear line, not a traceback wall
        if isinstance(err, getattr(module, "ERRORS", ())):
            print(f"aipulse: {err}", file=sys.stderr)
            return 2
        if _is_connection_error(err):
            print(f"aipulse: {str(err).splitlines()[0][:300]} (is the stack up? `aipulse status`)", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

"""``aipulse grafana``: export the provisioning folder or deploy to a running Grafana.

    aipulse grafana export [--out dashboards/provisioning]
    aipulse grafana deploy --url https://grafana.example.com --token $GRAFANA_TOKEN
    aipulse grafana render --out previews/ [--from -1h --to now] [--prometheus-url URL]

Wired into the ``aipulse`` command by cli/aipulse_cli/commands/grafana.py::

    add_arguments = grafana_cli.add_arguments
    def run(args): return grafana_cli.run(args, Settings.from_env())
"""
from __future__ import annotations

import argparse
import os
import sys

from .provisioning import DEFAULT_OUT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="grafana_command", required=True)
    e = sub.add_parser("export", help="write datasources, dashboards and alerting files for file provisioning")
    e.add_argument("--out", default=str(DEFAULT_OUT), help="folder to write (default: dashboards/provisioning)")
    d = sub.add_parser("deploy", help="push everything to a running Grafana through its HTTP API (idempotent)")
    d.add_argument("--url", default=os.environ.get("GRAFANA_URL"), help="Grafana base URL (or $GRAFANA_URL)")
    d.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                   help="service account token (or $GRAFANA_TOKEN)")
    from .render import add_arguments as render_arguments

    render_arguments(sub.add_parser("render", help="PNG preview of every dashboard (not Grafana)"))


def run(args: argparse.Namespace, settings=None) -> int:
    db = getattr(settings, "database", "aipulse")
    if args.grafana_command == "render":
        from .render import run as render

        return render(args, settings)
    if args.grafana_command == "export":
        from .provisioning import export

        written = export(args.out, db=db)
        print(f"wrote {len(written)} files under {args.out}")
        return 0
    if not args.url or not args.token:
        print("aipulse grafana deploy: give --url and --token (or GRAFANA_URL / GRAFANA_TOKEN)", file=sys.stderr)
        return 2
    from grafana_client import GrafanaApi

    from .deploy import DeployError, deploy

    try:
        changed = deploy(GrafanaApi.from_url(args.url, credential=args.token), db=db)
    except DeployError as err:
        print(f"aipulse grafana deploy: {err}", file=sys.stderr)
        return 2
    for line in changed:
        print(line)
    print(f"{len(changed)} changed")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="aipulse grafana")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

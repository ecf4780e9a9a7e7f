"""The options of `aipulse report` and `aipulse cost-model` (kept light: no heavy imports)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

# "--from -30d" is an option value, not a negative number (as in `aipulse metrics`).
_RELATIVE_ARG = re.compile(r"^-\d+(\.\d+)?[smhdw]?$")


def _range(p: argparse.ArgumentParser, default_from: str) -> None:
    p._negative_number_matcher = _RELATIVE_ARG
    p.add_argument("--from", dest="start", default=default_from, metavar="T",
                   help=f"start: RFC 3339, epoch seconds, 'now' or relative like -30d (default {default_from})")
    p.add_argument("--to", dest="end", default="now", metavar="T", help="end, exclusive (default now)")
    p.add_argument("--where", action="append", default=[], metavar="DIM=VALUE",
                   help="keep only this value of a dimension (service, feature, model, variant); repeat")


def report(p: argparse.ArgumentParser) -> None:
    _range(p, "-30d")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.html", help="the HTML file to write")
    p.add_argument("--title", default=None, help="report title (default: aipulse monthly review, <range>)")


def cost_model(p: argparse.ArgumentParser) -> None:
    _range(p, "-30d")
    p.add_argument("--volume", required=True, metavar="N/day",
                   help="requests per day to project, e.g. 10000/day, 500/hour, 2000000/month")
    p.add_argument("--feature", action="append", default=[], help="only this feature (repeat for several)")
    p.add_argument("--ceiling", type=float, default=None, metavar="USD",
                   help="monthly ceiling (default: the cost_run_rate_ceiling rule's threshold)")
    p.add_argument("--json", action="store_true", help="print JSON with stable names")

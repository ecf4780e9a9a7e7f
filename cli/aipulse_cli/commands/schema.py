"""``aipulse schema``: print the event JSON Schema (for producers in other languages)."""
from __future__ import annotations

import argparse
import json

from aipulse.contract import json_schema


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0

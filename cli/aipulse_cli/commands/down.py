"""``aipulse down``: stop every component the local stack started (by its recorded pid)."""
from __future__ import annotations

import argparse

from aipulse_local.process import StackError
from aipulse_local.stack import down
from aipulse_stream.config import ConfigError, Settings

from .up import progress

ERRORS = (ConfigError, StackError)


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    down(Settings.from_env(), progress=progress)
    return 0

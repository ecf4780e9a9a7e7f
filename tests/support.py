"""Helpers shared by the test suites (importable as `support`: tests/ is on pytest's pythonpath)."""
from __future__ import annotations

import time

import pytest


def wait_for(check, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Poll check() until it returns a truthy value; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")

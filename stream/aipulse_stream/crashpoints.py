"""Named crash points: a test-only switch that ends the worker abruptly at a chosen step.

Every step between fetching a batch and committing its offsets where a process can die has a
name (``POINTS``). The fault suite sets ``AIPULSE_TEST_CRASH_AT=<point>@<n>`` and the worker
calls ``reached(point)`` at each step; the n-th time the point is reached the process exits at
once (``os._exit``: no flush, no commit, no cleanup, like a SIGKILL)::

    AIPULSE_TEST_CRASH_AT=after_raw_insert:interactions@2 python -m aipulse_stream.worker

``AIPULSE_TEST_PAUSE_AT=<point>@<n>[,<point>@<n>...]`` instead freezes the process there (it sends itself
SIGSTOP; the test resumes it with SIGCONT): a worker stuck in a slow step while the consumer
group moves its partitions. Unset (production), ``reached`` is one dict lookup.
"""
from __future__ import annotations

import os
import signal
import sys

from .config import FaultConfig

CRASH_ENV = "AIPULSE_TEST_CRASH_AT"
PAUSE_ENV = "AIPULSE_TEST_PAUSE_AT"
CRASH_EXIT_CODE = 86

POINTS = (
    "after_fetch",                      # a batch fetched, nothing written
    "after_dlq_send",                   # dead letters on the DLQ topic, not yet recorded
    "after_raw_insert:interactions",    # one raw table written, the others not
    "after_raw_insert:feedback",
    "after_raw_insert:evaluations",
    "after_window_insert",              # window rows written, progress rows not
    "after_progress_insert",            # window and progress rows written, offsets not committed
    "during_revoke",                    # inside the partitions-revoked callback
    "after_commit",                     # offsets committed by Faust's commit timer (sources/kafka_batch.py)
)


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, n = value.partition("@")
    if point not in POINTS:
        raise ValueError(f"{value!r}: unknown crash point {point!r} (one of {', '.join(POINTS)})")
    return point, int(n or 1)


_faults = FaultConfig.from_env()   # CRASH_ENV, PAUSE_ENV
_crash = _parse(_faults.test_crash_at)
_pause = {_parse(v) for v in (_faults.test_pause_at or "").split(",") if v.strip()}
_counts: dict[str, int] = {}


def reached(point: str) -> None:
    """Mark that the worker reached ``point``; crash or freeze here when the switch says so."""
    if _crash is None and not _pause:
        return
    n = _counts[point] = _counts.get(point, 0) + 1
    if _crash is not None and _crash == (point, n):
        sys.stderr.write(f"aipulse worker: test crash at {point} (#{n})\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
    if (point, n) in _pause:
        sys.stderr.write(f"aipulse worker: test pause at {point} (#{n})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)

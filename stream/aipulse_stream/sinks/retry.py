"""Retry with exponential backoff: written once, used by every sink.

A sink's write is retried until it succeeds (the worker never acks what it has not
stored), waiting 0.1 s, 0.2 s, ... up to ``max_backoff_s`` between tries, with jitter so
that several workers do not hammer a recovering ClickHouse in step::

    >>> await retry(lambda: client.insert(...), what="insert into interactions")  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Awaitable, Callable, TypeVar

log = logging.getLogger("aipulse.retry")
T = TypeVar("T")

FIRST_BACKOFF_S = 0.1
LOG_EVERY_S = 10.0  # one warning per outage period, not one per try


async def retry(fn: Callable[[], Awaitable[T]], what: str, max_backoff_s: float = 30.0,
                on_failure: Callable[[BaseException], None] | None = None) -> T:
    """Await ``fn()`` until it returns; CancelledError (worker stopping) passes through."""
    delay = FIRST_BACKOFF_S
    failures = 0
    last_log = 0.0
    while True:
        try:
            result = await fn()
            if failures:
                log.warning("%s succeeded after %d failed tries", what, failures)
            return result
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any failure of the store is retried; the data stays unacked
            failures += 1
            if on_failure:
                on_failure(err)
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
                log.warning("%s failed (try %d), retrying with backoff: %s", what, failures, first)
                last_log = now
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, max_backoff_s)

"""The worker's stages share one lifecycle: stop() is safe without start() and safe twice, and
a pipeline with writes in flight flushes them (waits for them) before it stops."""
from __future__ import annotations

import asyncio

from aipulse_stream.config import Settings
from aipulse_stream.pipeline import Pipeline
from aipulse_stream.sinks.raw_events import RawEventsSink
from aipulse_stream.sinks.writer import ClickHouseWriter


async def _no_dlq(*_a):
    raise AssertionError("no dead letter expected")


def test_stop_without_start_and_twice():
    async def run():
        settings = Settings.from_env({})
        writer = ClickHouseWriter(settings)
        await writer.stop()
        await writer.stop()
        await writer.start()
        await writer.start()  # safe twice
        await writer.stop()
        await writer.stop()
        sink = RawEventsSink(writer, "t")
        await sink.stop()
        await sink.stop()
        pipe = Pipeline(settings, dlq_send=_no_dlq)
        await pipe.stop()
        await pipe.stop()
        assert await pipe.flush() == {}

    asyncio.run(run())


def test_stop_flushes_the_writes_in_flight():
    async def run():
        pipe = Pipeline(Settings.from_env({}), dlq_send=_no_dlq)
        landed = asyncio.Event()

        async def slow_write():
            await asyncio.sleep(0.05)
            landed.set()

        pipe._writes_landed.clear()
        task = asyncio.ensure_future(slow_write())
        task.add_done_callback(lambda _t: pipe._writes_landed.set())
        pipe._inflight = (task, {0: 1999}, None)
        await pipe.stop()
        assert landed.is_set() and pipe._writes_landed.is_set() and pipe._inflight is None

    asyncio.run(run())


def test_flush_reports_only_partitions_still_owned():
    async def run():
        pipe = Pipeline(Settings.from_env({}), dlq_send=_no_dlq)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        pipe._inflight = (done, {0: 1999, 1: 3999}, lambda p: p == 1)
        assert await pipe.flush() == {1: 3999}
        assert await pipe.flush() == {}

    asyncio.run(run())

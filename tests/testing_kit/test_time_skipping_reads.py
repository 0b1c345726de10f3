"""TestDurably skips idle time while the test reads a workflow from outside:
app.get_event, app.read_stream and app.watch wait like handle.result() does."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from durably import Context, SyncContext, WorkflowStatus
from durably.testing import FakeClock, SyncTestDurably, TestDurably
from durably.testing.clock import DEFAULT_START
from durably.testing.time_skipping import SkipTime

DAY = timedelta(days=1)


def elapsed(clock: FakeClock) -> timedelta:
    """Virtual time since the clock's default start."""
    return timedelta(microseconds=clock.now()) - timedelta(
        microseconds=FakeClock(DEFAULT_START).now()
    )


def register_late_event(app: TestDurably) -> None:
    """A workflow that sets its event "ready" after sleeping two days."""

    @app.workflow(name="late")
    async def late(ctx: Context) -> None:
        await ctx.sleep("wait", 2 * DAY)
        await ctx.set_event("ready", "at last")


@pytest.mark.parametrize("skip_time", ["when_waiting", "always"])
async def test_get_event_times_out_on_the_virtual_clock(skip_time: SkipTime) -> None:
    """get_event(timeout=60) returns None after 60 virtual seconds: the clock stops at
    the waiter's timeout, before the workflow's wake-up two days later."""
    async with TestDurably(skip_time=skip_time) as app:
        register_late_event(app)
        handle = await app.start("late")
        value = await asyncio.wait_for(app.get_event(handle.workflow_id, "ready", timeout=60), 30)
        assert value is None
        assert elapsed(app.clock) == timedelta(seconds=60)


async def test_get_event_waits_through_the_workflow_sleep() -> None:
    """get_event with a longer timeout gets the value once the workflow woke up."""
    async with TestDurably() as app:
        register_late_event(app)
        handle = await app.start("late")
        value = await asyncio.wait_for(
            app.get_event(handle.workflow_id, "ready", timeout=3 * DAY), 30
        )
        assert value == "at last"
        assert elapsed(app.clock) == 2 * DAY


async def test_time_stands_still_after_get_event_returns() -> None:
    """In the default mode the clock moves only while the test waits: once the event
    is read, the workflow sleeping after it stays asleep."""
    async with TestDurably() as app:

        @app.workflow()
        async def publisher(ctx: Context) -> str:
            await ctx.set_event("started", True)
            await ctx.sleep("rest", DAY)
            return "done"

        handle = await app.start(publisher)
        assert await app.get_event(handle.workflow_id, "started") is True
        await app.wait_until_idle()
        assert await handle.status() is WorkflowStatus.SUSPENDED
        assert elapsed(app.clock) == timedelta(0)


async def test_read_stream_waits_through_sleeps_between_writes() -> None:
    """async for over a stream whose writer sleeps an hour between entries gets every
    entry, the clock moving while the test waits for the next one only."""
    async with TestDurably() as app:

        @app.workflow()
        async def ticker(ctx: Context) -> None:
            for tick in range(3):
                await ctx.sleep(f"before-{tick}", timedelta(hours=1))
                await ctx.write_stream("ticks", tick)

        handle = await app.start(ticker)
        received: list[tuple[int, timedelta]] = []

        async def read() -> None:
            async for tick in app.read_stream(handle.workflow_id, "ticks", type=int):
                received.append((tick, elapsed(app.clock)))

        await asyncio.wait_for(read(), 30)
    assert [tick for tick, _ in received] == [0, 1, 2]
    assert [at >= timedelta(hours=tick + 1) for tick, at in received] == [True] * 3
    assert elapsed(app.clock) == timedelta(hours=3)


async def test_leaving_read_stream_early_stops_skipping() -> None:
    """After the test breaks out of read_stream, time stands still again."""
    async with TestDurably() as app:

        @app.workflow()
        async def writer(ctx: Context) -> None:
            await ctx.write_stream("out", "first")
            await ctx.sleep("rest", DAY)
            await ctx.write_stream("out", "second")

        handle = await app.start(writer)
        stream = app.read_stream(handle.workflow_id, "out")
        async for entry in stream:
            assert entry == "first"
            break
        await stream.aclose()  # type: ignore[attr-defined]
        await app.wait_until_idle()
        assert elapsed(app.clock) == timedelta(0)
        assert await handle.status() is WorkflowStatus.SUSPENDED


async def test_watch_follows_a_sleeping_workflow_to_its_end() -> None:
    """app.watch over a workflow that sleeps a day yields until it completes."""
    async with TestDurably() as app:

        @app.workflow()
        async def nap(ctx: Context) -> str:
            await ctx.sleep("nap", DAY)
            return "rested"

        handle = await app.start(nap)

        async def statuses() -> list[WorkflowStatus]:
            return [info.status async for info in app.watch(handle.workflow_id)]

        seen = await asyncio.wait_for(statuses(), 30)
    assert seen[-1] is WorkflowStatus.COMPLETED
    assert elapsed(app.clock) == DAY


def test_sync_test_app_reads_skip_time_too() -> None:
    """SyncTestDurably's get_event and read_stream skip idle time as well."""
    with SyncTestDurably() as app:

        @app.workflow()
        def slow(ctx: SyncContext) -> None:
            ctx.sleep("wait", DAY)
            ctx.set_event("ready", 1)
            ctx.write_stream("out", "entry")

        handle = app.start(slow)
        assert app.get_event(handle.workflow_id, "ready", timeout=60) is None
        assert elapsed(app.clock) == timedelta(seconds=60)
        assert list(app.read_stream(handle.workflow_id, "out")) == ["entry"]
        assert elapsed(app.clock) == DAY

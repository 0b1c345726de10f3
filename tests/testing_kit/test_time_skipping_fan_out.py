"""TestDurably's virtual clock under fan-out: ctx.map and asyncio.gather over child
workflows that wait on the clock, in memory or suspended."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from durably import Context
from durably.testing import FakeClock, TestDurably
from durably.testing.clock import DEFAULT_START
from durably.testing.time_skipping import _is_busy

DAY = timedelta(days=1)


def elapsed(clock: FakeClock) -> timedelta:
    """Virtual time since the clock's default start."""
    return timedelta(microseconds=clock.now()) - timedelta(
        microseconds=FakeClock(DEFAULT_START).now()
    )


def register_leaf(app: TestDurably) -> None:
    """A child workflow that sleeps ``seconds`` and returns them doubled."""

    @app.workflow(name="leaf")
    async def leaf(ctx: Context, seconds: int) -> int:
        await ctx.sleep("nap", timedelta(seconds=seconds))
        return seconds * 2


@pytest.mark.parametrize("seconds", [1, 86_400], ids=["in-memory", "suspended"])
async def test_map_over_sleeping_children_finishes_at_the_last_wake_up(seconds: int) -> None:
    """ctx.map over children that sleep: the clock moves to each wake-up and the map
    returns every child's result (a map waits only for its items, so it never holds
    the clock itself)."""
    async with TestDurably() as app:
        register_leaf(app)

        @app.workflow()
        async def parent(ctx: Context) -> list[int]:
            return (await ctx.map("leaf", [seconds, 2 * seconds])).values

        assert await asyncio.wait_for(app.run(parent), 30) == [2 * seconds, 4 * seconds]
    assert elapsed(app.clock) == timedelta(seconds=2 * seconds)


async def test_map_one_at_a_time_over_sleeping_children_adds_up_their_sleeps() -> None:
    """With max_concurrency=1 each child starts when the one before it ended."""
    async with TestDurably() as app:
        register_leaf(app)

        @app.workflow()
        async def parent(ctx: Context) -> list[int]:
            return (await ctx.map("leaf", [1, 2, 3], max_concurrency=1)).values

        assert await asyncio.wait_for(app.run(parent), 30) == [2, 4, 6]
    assert elapsed(app.clock) == timedelta(seconds=6)


async def test_gather_over_sleeping_children_finishes_at_the_last_wake_up() -> None:
    """asyncio.gather of ctx.run_child over children that sleep."""
    async with TestDurably() as app:
        register_leaf(app)

        @app.workflow()
        async def parent(ctx: Context) -> list[int]:
            return list(await asyncio.gather(ctx.run_child("leaf", 3), ctx.run_child("leaf", 1)))

        assert await asyncio.wait_for(app.run(parent), 30) == [6, 2]
    assert elapsed(app.clock) == timedelta(seconds=3)


@pytest.mark.parametrize("fan_out", ["map", "gather"])
async def test_children_waiting_for_a_signal_time_out_on_the_virtual_clock(fan_out: str) -> None:
    """Children waiting for a signal with a timeout: the one signalled returns its
    payload, the other returns None once its virtual hour has passed."""
    async with TestDurably() as app:

        @app.workflow(name="approval")
        async def approval(ctx: Context, who: str) -> object:
            return await ctx.wait_signal("approve", timeout=timedelta(hours=1))

        @app.workflow()
        async def parent(ctx: Context) -> list[object]:
            if fan_out == "map":
                return [item.value for item in await ctx.map("approval", ["ann", "bob"])]
            return list(
                await asyncio.gather(
                    ctx.run_child("approval", "ann", workflow_id="parent:0"),
                    ctx.run_child("approval", "bob", workflow_id="parent:2"),
                )
            )

        handle = await app.start(parent, workflow_id="parent")
        await app.wait_until_idle()
        await app.send_signal("parent:0", "approve", "yes")  # the first child's id
        assert await asyncio.wait_for(handle.result(), 30) == ["yes", None]
    assert elapsed(app.clock) == timedelta(hours=1)


async def test_a_running_map_item_holds_the_clock() -> None:
    """While a step of a map runs, the run is busy although a sleep beside the map
    waits on the clock: the map does not count, its running item does."""
    started = asyncio.Event()
    gate = asyncio.Event()
    async with TestDurably(inline_wait=DAY) as app:
        wake_up = app.clock.now() + 3_600_000_000

        async def work(item: int) -> int:
            started.set()
            await gate.wait()
            return item

        @app.workflow()
        async def job(ctx: Context) -> list[int]:
            mapped, _ = await asyncio.gather(
                ctx.map(work, [1]), ctx.sleep("beside", timedelta(hours=1))
            )
            return mapped.values

        handle = await app.start(job)
        await started.wait()
        for _ in range(10_000):  # until the sleep beside waits on the clock
            if any(sleeper.moment == wake_up for sleeper in app.clock.sleepers()):
                break
            await asyncio.sleep(0)
        assert _is_busy(app, app.clock.sleepers())
        gate.set()
        assert await asyncio.wait_for(handle.result(), 30) == [1]
    assert elapsed(app.clock) == timedelta(hours=1)

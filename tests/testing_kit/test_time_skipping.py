"""TestDurably's virtual clock: idle time is skipped, busy time is not."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from durably import (
    Context,
    MemoryStore,
    RetryPolicy,
    WorkflowFailedError,
    WorkflowStatus,
    WorkflowTimeoutError,
)
from durably.testing import FakeClock, TestDurably
from durably.testing.clock import DEFAULT_START

DAY = timedelta(days=1)


def elapsed(clock: FakeClock) -> timedelta:
    """Virtual time since the clock's default start."""
    return timedelta(microseconds=clock.now()) - timedelta(
        microseconds=FakeClock(DEFAULT_START).now()
    )


async def test_a_thirty_day_sleep_returns_at_once() -> None:
    """app.run of a workflow sleeping 30 days returns, the clock exactly 30 days on."""
    async with TestDurably() as app:

        @app.workflow()
        async def trial(ctx: Context) -> datetime:
            await ctx.sleep("trial", timedelta(days=30))
            return await ctx.now()

        woke_at = await app.run(trial)
    assert woke_at == DEFAULT_START + timedelta(days=30)
    assert elapsed(app.clock) == timedelta(days=30)


async def test_time_stands_still_until_the_test_waits() -> None:
    """Starting a workflow does not move the clock: it sleeps until a result is awaited."""
    async with TestDurably() as app:

        @app.workflow()
        async def nap(ctx: Context) -> str:
            await ctx.sleep("nap", DAY)
            return "rested"

        handle = await app.start(nap)
        await app.wait_until_idle()
        assert await handle.status() is WorkflowStatus.SUSPENDED
        assert elapsed(app.clock) == timedelta(0)
        assert await handle.result() == "rested"
        assert elapsed(app.clock) == DAY


async def test_a_short_sleep_in_memory_is_skipped_too() -> None:
    """A sleep short enough to wait in memory is skipped as well, without suspending."""
    async with TestDurably(inline_wait=timedelta(hours=1)) as app:

        @app.workflow()
        async def brief(ctx: Context) -> datetime:
            await ctx.sleep("pause", timedelta(minutes=30))
            return await ctx.now()

        assert await app.run(brief) == DEFAULT_START + timedelta(minutes=30)


async def test_signal_wait_times_out_after_its_virtual_timeout() -> None:
    """A wait nobody answers returns None once its (virtual) week has passed."""
    async with TestDurably() as app:

        @app.workflow()
        async def approval(ctx: Context) -> tuple[object, datetime]:
            answer = await ctx.wait_signal("approve", timeout=timedelta(days=7))
            return answer, await ctx.now()

        answer, at = await app.run(approval)
    assert answer is None
    assert at == DEFAULT_START + timedelta(days=7)


async def test_a_signal_sent_after_start_arrives_before_the_timeout() -> None:
    """The clock does not run ahead of the test: a signal sent right after the start
    is received, although the timeout is only a second long."""
    async with TestDurably() as app:

        @app.workflow()
        async def approval(ctx: Context) -> object:
            return await ctx.wait_signal("approve", timeout=timedelta(seconds=1))

        handle = await app.start(approval)
        await app.send_signal(handle.workflow_id, "approve", "yes")
        assert await handle.result() == "yes"


async def test_advance_fires_the_timers_due_meanwhile_in_order() -> None:
    """advance() moves the clock by exactly the duration, through every timer on the
    way; a signal sent then reaches a workflow that has woken up."""
    events: list[tuple[str, timedelta]] = []
    async with TestDurably() as app:

        async def note(what: str) -> None:
            events.append((what, elapsed(app.clock)))

        @app.workflow()
        async def reminders(ctx: Context) -> object:
            await ctx.sleep("first", DAY)
            await ctx.step("remind-1", note, "first reminder")
            await ctx.sleep("second", DAY)
            await ctx.step("remind-2", note, "second reminder")
            return await ctx.wait_signal("paid", timeout=timedelta(days=30))

        handle = await app.start(reminders)
        await app.advance(timedelta(days=1, hours=12))
        assert events == [("first reminder", DAY)]
        assert elapsed(app.clock) == timedelta(days=1, hours=12)
        await app.advance(DAY)
        assert events[-1] == ("second reminder", 2 * DAY)
        await app.send_signal(handle.workflow_id, "paid", 42)
        assert await handle.result() == 42
    assert elapsed(app.clock) == timedelta(days=2, hours=12)


async def test_retry_backoff_is_skipped() -> None:
    """A step retried an hour apart succeeds at its third attempt, two virtual hours on."""
    attempts: list[timedelta] = []
    async with TestDurably() as app:

        async def flaky() -> str:
            attempts.append(elapsed(app.clock))
            if len(attempts) < 3:
                raise ConnectionError("the service is down")
            return "ok"

        @app.workflow()
        async def call(ctx: Context) -> str:
            return await ctx.step(
                "call", flaky, retry=RetryPolicy.fixed(3, delay=timedelta(hours=1))
            )

        assert await app.run(call) == "ok"
    assert attempts == [timedelta(0), timedelta(hours=1), timedelta(hours=2)]


async def test_compensation_backoff_is_skipped() -> None:
    """A compensation that fails twice is retried (exponential backoff) until it works."""
    refunds: list[timedelta] = []
    async with TestDurably() as app:

        async def charge() -> int:
            return 10

        async def refund(amount: int) -> None:
            refunds.append(elapsed(app.clock))
            if len(refunds) < 3:
                raise ConnectionError("the bank is down")

        async def ship() -> None:
            raise RuntimeError("out of stock")

        @app.workflow()
        async def order(ctx: Context) -> None:
            await ctx.step("charge", charge, compensate=refund)
            await ctx.step("ship", ship)

        with pytest.raises(WorkflowFailedError) as failure:
            await app.run(order)
    assert failure.value.status == WorkflowStatus.COMPENSATED
    assert len(refunds) == 3
    assert refunds[0] < refunds[1] < refunds[2]


async def test_a_deadline_passes_while_the_workflow_waits_in_memory() -> None:
    """The workflow's deadline fires on the virtual clock, before its longer sleep ends."""
    async with TestDurably(inline_wait=DAY) as app:

        @app.workflow()
        async def slow(ctx: Context) -> str:
            await ctx.sleep("long", timedelta(hours=2))
            return "too late"

        with pytest.raises(WorkflowFailedError) as failure:
            await app.run(slow, timeout=timedelta(hours=1))
    assert failure.value.status == WorkflowStatus.FAILED
    assert isinstance(failure.value.__cause__, WorkflowTimeoutError)
    assert elapsed(app.clock) == timedelta(hours=1)


async def test_workflows_sleeping_in_parallel_wake_in_order() -> None:
    """Each workflow wakes at its own time, earliest first."""
    woken: list[str] = []
    async with TestDurably() as app:

        async def wake(name: str) -> None:
            woken.append(name)

        @app.workflow()
        async def sleeper(ctx: Context, name: str, days: int) -> datetime:
            await ctx.sleep("sleep", timedelta(days=days))
            await ctx.step("wake", wake, name)
            return await ctx.now()

        handles = [
            await app.start(sleeper, name, days)
            for name, days in [("three", 3), ("one", 1), ("two", 2)]
        ]
        times = [await handle.result() for handle in handles]
    assert woken == ["one", "two", "three"]
    assert times == [DEFAULT_START + timedelta(days=days) for days in (3, 1, 2)]


async def test_a_running_step_holds_the_clock() -> None:
    """While a step runs, no timer fires early: not even the workflow's deadline."""
    started = asyncio.Event()
    gate = asyncio.Event()
    async with TestDurably() as app:

        async def work() -> str:
            started.set()
            await gate.wait()
            return "done"

        @app.workflow()
        async def job(ctx: Context) -> str:
            return await ctx.step("work", work)

        handle = await app.start(job, timeout=timedelta(minutes=5))
        result = asyncio.ensure_future(handle.result())
        await started.wait()
        finished, _ = await asyncio.wait([result], timeout=0.2)  # a chance to skip
        assert not finished
        assert elapsed(app.clock) == timedelta(0)
        gate.set()
        assert await result == "done"
    assert elapsed(app.clock) == timedelta(0)


async def test_result_timeout_is_on_the_virtual_clock() -> None:
    """handle.result(timeout=...) gives up after that much virtual time."""
    async with TestDurably() as app:

        @app.workflow()
        async def forever(ctx: Context) -> object:
            return await ctx.wait_signal("never")

        handle = await app.start(forever)
        with pytest.raises(TimeoutError):
            await handle.result(timeout=timedelta(hours=1))
        assert timedelta(hours=1) <= elapsed(app.clock) < timedelta(hours=1, seconds=2)


async def test_always_mode_skips_without_a_waiter() -> None:
    """skip_time="always": the workflow finishes while the test only watches it."""
    async with TestDurably(skip_time="always") as app:

        @app.workflow()
        async def nap(ctx: Context) -> str:
            await ctx.sleep("nap", timedelta(days=3))
            return "rested"

        handle = await app.start(nap)
        statuses = [info.status async for info in app.watch(handle.workflow_id)]
    assert statuses[-1] is WorkflowStatus.COMPLETED
    assert elapsed(app.clock) == timedelta(days=3)


async def test_never_mode_leaves_the_clock_to_the_test() -> None:
    """skip_time="never": only the test moves the clock."""
    async with TestDurably(skip_time="never") as app:

        @app.workflow()
        async def nap(ctx: Context) -> str:
            await ctx.sleep("nap", DAY)
            return "rested"

        handle = await app.start(nap)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(handle.result()), timeout=0.2)
        assert await handle.status() is WorkflowStatus.SUSPENDED
        app.clock.advance(DAY)
        assert await handle.result() == "rested"


def test_bad_options_are_refused() -> None:
    """A skip mode that does not exist, or another clock, is a clear error."""
    with pytest.raises(ValueError, match="skip_time must be one of"):
        TestDurably(skip_time="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="FakeClock"):
        TestDurably(clock=object())  # type: ignore[arg-type]


async def test_advance_fires_each_cron_tick_at_its_time() -> None:
    """A daily schedule fires once per virtual day, each run seeing its tick's time."""
    pytest.importorskip("cronsim", reason="schedules need pip install 'durably[schedules]'")
    runs: list[tuple[datetime, datetime]] = []
    async with TestDurably() as app:

        @app.scheduled("0 9 * * *")
        async def report(ctx: Context, tick: datetime) -> None:
            runs.append((tick, await ctx.now()))

        await app.advance(timedelta(days=3))
    ticks = [DEFAULT_START + timedelta(days=day, hours=9) for day in range(3)]
    assert runs == [(tick, tick) for tick in ticks]


async def test_apps_sharing_a_store_and_clock_take_over_each_others_work() -> None:
    """A store and a clock passed in are shared: a second app resumes what the first
    (closed) app left, under an executor id of its own."""
    store, clock = MemoryStore(), FakeClock()

    def register(app: TestDurably) -> None:
        @app.workflow(name="nap")
        async def nap(ctx: Context) -> datetime:
            await ctx.sleep("nap", DAY)
            return await ctx.now()

    first = TestDurably(store, clock=clock)
    register(first)
    async with first:
        handle = await first.start("nap", workflow_id="nap-1")
        await first.wait_until_idle()
    second = TestDurably(store, clock=clock)
    register(second)
    async with second:
        assert await second.handle("nap-1").result() == DEFAULT_START + DAY
    assert first.executor_id != second.executor_id
    assert handle.workflow_id == "nap-1"

"""Durable sleep, retry backoff, timeouts and cancellation, on the virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from durably import (
    Context,
    Durably,
    RetryPolicy,
    StepTimeoutError,
    Store,
    WorkflowCancelled,
    WorkflowFailedError,
    WorkflowFinishedError,
    WorkflowHandle,
    WorkflowStatus,
)
from durably.testing import FakeClock


async def wait_for_status(app: Durably, workflow_id: str, status: WorkflowStatus) -> None:
    """Yield to the loop until the workflow has ``status`` (bounded, no wall clock)."""
    for _ in range(5_000):
        if (await app.get_workflow(workflow_id)).status is status and workflow_id not in app._runs:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{workflow_id} never became {status}")


async def test_short_sleep_waits_in_memory(app: Durably, clock: FakeClock) -> None:
    """A sleep shorter than inline_wait keeps the workflow RUNNING until the clock moves."""

    @app.workflow()
    async def napper(ctx: Context) -> str:
        await ctx.sleep("nap", timedelta(milliseconds=500))
        return "rested"

    handle = await app.start(napper)
    await clock.wait_for_sleepers(3)
    assert await handle.status() is WorkflowStatus.RUNNING
    clock.advance(timedelta(milliseconds=500))
    assert await handle.result() == "rested"


async def test_a_workflow_suspends_only_once_its_operations_in_flight_are_recorded(
    app: Durably, clock: FakeClock
) -> None:
    """A long sleep that unwinds the body while a step started beside it still runs:
    the run waits for the step's checkpoint before it suspends, and replay later
    returns the recorded result without running the step again."""
    release = asyncio.Event()
    calls: list[str] = []

    async def slow() -> str:
        calls.append("slow")
        await release.wait()
        return "done"

    @app.workflow()
    async def side_by_side(ctx: Context) -> str:
        result, _ = await asyncio.gather(
            ctx.step("slow", slow), ctx.sleep("settlement", timedelta(hours=24))
        )
        return str(result)

    handle = await app.start(side_by_side)
    for _ in range(200):  # the body has unwound; the run waits for the step
        await asyncio.sleep(0)
    assert handle.workflow_id in app._runs
    assert await handle.status() is WorkflowStatus.RUNNING
    release.set()
    await wait_for_status(app, handle.workflow_id, WorkflowStatus.SUSPENDED)
    history = await app.history(handle.workflow_id)
    assert [(entry.name, entry.status) for entry in history][:1] == [("slow", "COMPLETED")]
    clock.advance(timedelta(hours=24))
    assert await handle.result() == "done"
    assert calls == ["slow"]


async def test_long_sleep_unwinds_and_the_timer_resumes_it(
    app: Durably, clock: FakeClock, store_factory: Callable[[], Store]
) -> None:
    """A long sleep frees the workflow's memory; the timer re-runs it by replay."""
    before: list[int] = []

    async def mark() -> int:
        before.append(1)
        return len(before)

    @app.workflow()
    async def sleeper(ctx: Context) -> int:
        await ctx.step("mark", mark)
        await ctx.sleep("settlement", timedelta(hours=24))
        return await ctx.step("mark-again", mark)

    handle = await app.start(sleeper)
    await wait_for_status(app, handle.workflow_id, WorkflowStatus.SUSPENDED)
    assert handle.workflow_id not in app._runs
    info = await handle.info()
    assert info.wake_at is not None
    clock.advance(timedelta(hours=23))
    await asyncio.sleep(0)
    assert await handle.status() is WorkflowStatus.SUSPENDED
    clock.advance(timedelta(hours=1))
    assert await handle.result() == 2
    assert before == [1, 1]


async def test_replayed_sleep_is_never_extended(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """After a restart mid-sleep the workflow wakes at the recorded time, not later."""

    def register(app: Durably) -> object:
        @app.workflow(name="sleeps")
        async def sleeps(ctx: Context) -> str:
            await ctx.sleep("wait", timedelta(hours=2))
            return "woke"

        return sleeps

    first = app_factory()
    workflow = register(first)
    async with first:
        await first.start(workflow, workflow_id="s")  # type: ignore[arg-type]
        await wait_for_status(first, "s", WorkflowStatus.SUSPENDED)
    clock.advance(timedelta(hours=1, minutes=59))
    second = app_factory()
    register(second)
    async with second:
        assert await second.handle("s").status() is WorkflowStatus.SUSPENDED
        clock.advance(timedelta(minutes=1))
        assert await second.handle("s").result() == "woke"


async def test_retry_backoff_is_durable_across_restarts(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """A crash during a 10-minute backoff keeps the attempt count and waits the rest."""
    attempts: list[int] = []
    second_attempt = asyncio.Event()

    def register(app: Durably) -> object:
        async def flaky() -> str:
            attempts.append(1)
            if len(attempts) == 2:
                second_attempt.set()
            if len(attempts) < 3:
                raise ConnectionError(f"attempt {len(attempts)} failed")
            return "ok"

        @app.workflow(name="retries")
        async def retries(ctx: Context) -> str:
            return await ctx.step(
                "flaky",
                flaky,
                retry=RetryPolicy.fixed(3, timedelta(minutes=10)),
            )

        return retries

    first = app_factory()
    workflow = register(first)
    async with first:
        await first.start(workflow, workflow_id="r")  # type: ignore[arg-type]
        await wait_for_status(first, "r", WorkflowStatus.SUSPENDED)
        history = await first.store.load_history("r")
    assert len(attempts) == 1
    assert [a.attempt for a in history.attempts[0]] == [1]
    clock.advance(timedelta(minutes=9))
    second = app_factory()
    register(second)
    async with second:
        await asyncio.sleep(0)
        assert len(attempts) == 1
        clock.advance(timedelta(minutes=1))
        # Until the second attempt has run, the workflow is still SUSPENDED from before
        # (a status check alone could pass before the store's round trips are done).
        await asyncio.wait_for(second_attempt.wait(), timeout=60)
        await wait_for_status(second, "r", WorkflowStatus.SUSPENDED)
        assert len(attempts) == 2
        clock.advance(timedelta(minutes=10))
        assert await second.handle("r").result() == "ok"
    assert len(attempts) == 3


async def test_retry_exhaustion_fails_with_the_last_error(app: Durably) -> None:
    """After max_attempts the step's error fails the workflow."""
    calls: list[int] = []

    async def always_fails() -> None:
        calls.append(1)
        raise ConnectionError(f"failure {len(calls)}")

    @app.workflow()
    async def exhausted(ctx: Context) -> None:
        await ctx.step("fail", always_fails, retry=RetryPolicy.fixed(3, 0))

    with pytest.raises(WorkflowFailedError, match="failure 3"):
        await app.run(exhausted)
    assert len(calls) == 3


async def test_non_retryable_error_is_not_retried(app: Durably) -> None:
    """dont_retry_on stops retries at once."""
    calls: list[int] = []

    async def declined() -> None:
        calls.append(1)
        raise PermissionError("card declined")

    @app.workflow()
    async def charge(ctx: Context) -> None:
        policy = RetryPolicy.fixed(5, 0, dont_retry_on=(PermissionError,))
        await ctx.step("charge", declined, retry=policy)

    with pytest.raises(WorkflowFailedError, match="declined"):
        await app.run(charge)
    assert calls == [1]


async def test_async_step_timeout_fails_the_attempt(app: Durably, clock: FakeClock) -> None:
    """An async step past its timeout is cancelled and fails with StepTimeoutError."""
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.workflow()
    async def timed(ctx: Context) -> str:
        try:
            await ctx.step("slow", slow, timeout=timedelta(seconds=5))
        except StepTimeoutError:
            return "timed out"
        return "finished"

    handle = await app.start(timed)
    await clock.wait_for_sleepers(3)
    clock.advance(timedelta(seconds=5))
    assert await handle.result() == "timed out"
    assert cancelled.is_set()


async def test_sync_step_timeout_fails_at_the_deadline(app: Durably, clock: FakeClock) -> None:
    """A plain def step cannot be interrupted, but the step fails at its deadline."""
    release = __import__("threading").Event()

    def blocking() -> str:
        release.wait()
        return "late"

    @app.workflow()
    async def timed(ctx: Context) -> str:
        try:
            return await ctx.step("blocking", blocking, timeout=timedelta(seconds=1))
        except StepTimeoutError as error:
            return str(error)

    handle = await app.start(timed)
    await clock.wait_for_sleepers(3)
    clock.advance(timedelta(seconds=1))
    result = await handle.result()
    release.set()
    assert "timeout" in result


async def test_workflow_deadline_fails_and_compensates(app: Durably, clock: FakeClock) -> None:
    """A workflow past its durable deadline fails with WorkflowTimeoutError and is
    compensated."""
    undone: list[str] = []

    async def book() -> str:
        return "b"

    async def unbook(value: str) -> None:
        undone.append(value)

    @app.workflow()
    async def deadline(ctx: Context) -> None:
        await ctx.step("book", book, compensate=unbook)
        await ctx.wait_signal("never")

    handle = await app.start(deadline, timeout=timedelta(minutes=5))
    await clock.wait_for_sleepers(4)  # loops, the deadline timer, the signal wait
    clock.advance(timedelta(minutes=5))
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result()
    assert caught.value.status == WorkflowStatus.COMPENSATED
    assert caught.value.error_type == "WorkflowTimeoutError"
    assert undone == ["b"]


async def test_cancel_interrupts_a_running_async_step(app: Durably) -> None:
    """Cancelling stops the running step and ends the workflow CANCELLED."""
    started = asyncio.Event()
    after: list[str] = []

    async def long_step() -> None:
        started.set()
        await asyncio.Event().wait()

    async def never() -> None:
        after.append("ran")

    @app.workflow()
    async def cancellable(ctx: Context) -> None:
        await ctx.step("long", long_step)
        await ctx.step("never", never)

    error = await cancel_once_started(app, await app.start(cancellable), started)
    assert isinstance(error.__cause__, WorkflowCancelled)
    assert after == []


async def cancel_once_started(
    app: Durably, handle: WorkflowHandle[Any], started: asyncio.Event
) -> WorkflowFailedError:
    """Cancel the workflow once its step has started; it must end CANCELLED."""
    await started.wait()
    await app.cancel(handle.workflow_id)
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result()
    assert caught.value.status == WorkflowStatus.CANCELLED
    return caught.value


async def test_cancel_during_a_retried_step_records_no_failed_attempt(app: Durably) -> None:
    """A cancellation that interrupts a step is not the step failing: its retry policy
    (which retries every Exception) neither records a failed attempt nor waits a backoff."""
    started = asyncio.Event()

    async def long_step() -> None:
        started.set()
        await asyncio.Event().wait()

    @app.workflow()
    async def cancellable(ctx: Context) -> None:
        await ctx.step("long", long_step, retry=RetryPolicy.fixed(5, timedelta(hours=1)))

    handle = await app.start(cancellable)
    await cancel_once_started(app, handle, started)
    history = await app._store.load_history(handle.workflow_id)
    assert history.attempts == {}, "the interrupted attempt was recorded as a failure to retry"


async def test_cancel_of_a_suspended_workflow_is_immediate(
    app_factory: Callable[..., Durably],
) -> None:
    """Nobody runs a suspended workflow: cancel marks it CANCELLED at once."""
    app = app_factory(inline_wait=0)

    @app.workflow()
    async def waits(ctx: Context) -> object:
        return await ctx.wait_signal("x")

    async with app:
        handle = await app.start(waits)
        await wait_for_status(app, handle.workflow_id, WorkflowStatus.SUSPENDED)
        assert await app.cancel(handle.workflow_id) is WorkflowStatus.CANCELLED
        assert await app.cancel(handle.workflow_id) is WorkflowStatus.CANCELLED


async def test_cancel_with_compensation_runs_the_compensations(
    app_factory: Callable[..., Durably],
) -> None:
    """cancel(compensate=True) undoes completed steps, then ends CANCELLED."""
    app = app_factory(inline_wait=0)
    undone: list[str] = []

    async def reserve() -> str:
        return "seat-1"

    async def release(seat: str) -> None:
        undone.append(seat)

    @app.workflow()
    async def booking(ctx: Context) -> object:
        await ctx.step("reserve", reserve, compensate=release)
        return await ctx.wait_signal("confirm")

    async with app:
        handle = await app.start(booking)
        await wait_for_status(app, handle.workflow_id, WorkflowStatus.SUSPENDED)
        await app.cancel(handle.workflow_id, compensate=True)
        with pytest.raises(WorkflowFailedError) as caught:
            await handle.result()
    assert caught.value.status == WorkflowStatus.CANCELLED
    assert undone == ["seat-1"]


async def test_cancel_never_overwrites_a_finished_workflow(app: Durably) -> None:
    """Cancelling a COMPLETED workflow raises and leaves it COMPLETED (seed G-10)."""

    @app.workflow()
    async def quick(ctx: Context) -> int:
        return 1

    handle = await app.start(quick)
    await handle.result()
    with pytest.raises(WorkflowFinishedError):
        await app.cancel(handle.workflow_id)
    assert await handle.status() is WorkflowStatus.COMPLETED

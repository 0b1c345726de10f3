"""Workflow deadlines (``timeout=`` on start): a suspended workflow wakes at its
deadline, and a run that starts past it times out instead of completing.

Every test runs on the virtual clock against every store; a wall-clock bound only
stops a test that would otherwise wait forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from durably import (
    Context,
    Durably,
    Store,
    WorkflowFailedError,
    WorkflowHandle,
    WorkflowStatus,
    WorkflowTimeoutError,
)
from durably.testing import FakeClock, TestDurably, crash_at

HANG_GUARD = 20.0  # wall-clock seconds: only to fail instead of hanging


async def ended(handle: WorkflowHandle[object]) -> WorkflowFailedError | object:
    """The workflow's result, or the WorkflowFailedError it ended with."""
    try:
        return await asyncio.wait_for(handle.result(), HANG_GUARD)
    except WorkflowFailedError as error:
        return error
    except TimeoutError:
        info = await handle.info()
        raise AssertionError(
            f"workflow {handle.workflow_id} never ended: still {info.status} "
            f"(wake_at={info.wake_at}, deadline_at={info.deadline_at})"
        ) from None


async def suspended(app: Durably, workflow_id: str) -> None:
    """Yield until the workflow is SUSPENDED and no run of it is in memory."""
    for _ in range(2_000):
        info = await app.get_workflow(workflow_id)
        if info.status is WorkflowStatus.SUSPENDED and workflow_id not in app._runs:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{workflow_id} never suspended")


def assert_timed_out(outcome: object, status: WorkflowStatus) -> WorkflowFailedError:
    assert isinstance(outcome, WorkflowFailedError), f"expected a timeout, got {outcome!r}"
    assert outcome.status is status
    assert outcome.error_type == "WorkflowTimeoutError"
    assert "passed its deadline" in (outcome.error_message or "")
    return outcome


@pytest.mark.parametrize("signal_timeout", [timedelta(hours=1), None])
async def test_a_workflow_suspended_on_a_signal_times_out_at_its_deadline(
    app_factory: Callable[..., Durably],
    clock: FakeClock,
    signal_timeout: timedelta | None,
) -> None:
    """Waiting for a signal (for an hour, or forever) past a 10-minute deadline: the
    workflow wakes at the deadline, times out and is compensated, as a running one."""
    undone: list[str] = []
    after: list[str] = []

    async def book() -> str:
        return "booking"

    async def unbook(value: str) -> None:
        undone.append(value)

    async def confirm() -> None:
        after.append("confirmed")

    app = app_factory(inline_wait=0)
    async with app:

        @app.workflow(name="approval")
        async def approval(ctx: Context) -> object:
            await ctx.step("book", book, compensate=unbook)
            answer = await ctx.wait_signal("approve", timeout=signal_timeout)
            await ctx.step("confirm", confirm)
            return answer

        handle = await app.start(approval, timeout=timedelta(minutes=10))
        deadline = clock.now() + 10 * 60 * 1_000_000
        await suspended(app, handle.workflow_id)
        info = await handle.info()
        assert info.wake_at is not None and info.deadline_at is not None
        assert info.wake_at == info.deadline_at  # the earlier of the two wake-ups

        clock.advance(timedelta(minutes=9, seconds=59))
        await asyncio.sleep(0)
        assert await handle.status() is WorkflowStatus.SUSPENDED
        clock.advance(timedelta(seconds=1))
        assert clock.now() == deadline
        error = assert_timed_out(await ended(handle), WorkflowStatus.COMPENSATED)
        info = await handle.info()
    assert error.error_type == "WorkflowTimeoutError"
    assert info.finished_at is not None
    assert info.finished_at == info.deadline_at  # at the deadline, not at the signal's
    assert undone == ["booking"]
    assert after == []


async def test_a_sleep_longer_than_the_deadline_times_out_at_the_deadline(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """A 2-hour durable sleep under a 1-hour deadline ends the workflow at 1 hour."""
    after: list[str] = []

    async def wake() -> None:
        after.append("woke")

    app = app_factory()
    async with app:

        @app.workflow(name="napper")
        async def napper(ctx: Context) -> str:
            await ctx.sleep("nap", timedelta(hours=2))
            await ctx.step("wake", wake)
            return "rested"

        handle = await app.start(napper, timeout=timedelta(hours=1))
        await suspended(app, handle.workflow_id)
        info = await handle.info()
        assert info.wake_at == info.deadline_at
        clock.advance(timedelta(hours=1))
        assert_timed_out(await ended(handle), WorkflowStatus.FAILED)
        info = await handle.info()
    assert info.finished_at == info.deadline_at
    assert after == []


@pytest.mark.parametrize("nap", [timedelta(hours=2), timedelta(minutes=30)])
async def test_a_workflow_woken_after_its_deadline_times_out(
    app_factory: Callable[..., Durably], clock: FakeClock, nap: timedelta
) -> None:
    """Nobody runs the workflow until 3 hours later (no worker): with nothing left to
    run but its ``return``, it still times out; replaying its sleep is no progress."""

    def register(app: Durably) -> object:
        @app.workflow(name="late")
        async def late(ctx: Context) -> str:
            await ctx.sleep("nap", nap)
            return "finished"

        return late

    first = app_factory()
    workflow = register(first)
    async with first:
        handle = await first.start(workflow, workflow_id="late-1", timeout=timedelta(hours=1))  # type: ignore[call-overload]
        await suspended(first, handle.workflow_id)
    clock.advance(timedelta(hours=3))
    second = app_factory()
    register(second)
    async with second:
        assert_timed_out(await ended(second.handle("late-1")), WorkflowStatus.FAILED)
        info = await second.get_workflow("late-1")
    assert info.finished_at is not None and info.deadline_at is not None
    assert info.finished_at > info.deadline_at  # when it was run, long after


async def test_a_replayed_sleep_that_outlasted_the_deadline_raises_the_timeout(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """Run for the first time since its deadline, the workflow gets the timeout where
    a running one would have: from the sleep that was still going at the deadline, not
    from the operation after it (which the body would catch here)."""

    def register(app: Durably) -> object:
        async def after() -> str:
            return "after"

        @app.workflow(name="catches")
        async def catches(ctx: Context) -> str:
            await ctx.sleep("nap", timedelta(hours=2))
            try:
                return str(await ctx.step("after", after))
            except WorkflowTimeoutError:
                return "caught after the sleep"

        return catches

    first = app_factory()
    workflow = register(first)
    async with first:
        await first.start(workflow, workflow_id="catches-1", timeout=timedelta(hours=1))  # type: ignore[call-overload]
        await suspended(first, "catches-1")
    clock.advance(timedelta(hours=3))
    second = app_factory()
    register(second)
    async with second:
        assert_timed_out(await ended(second.handle("catches-1")), WorkflowStatus.FAILED)


async def test_a_deadline_not_reached_changes_nothing(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """Waits that end before the deadline keep their own wake-up; the workflow
    completes normally."""
    app = app_factory(inline_wait=0)
    async with app:

        @app.workflow(name="in-time")
        async def in_time(ctx: Context) -> str:
            await ctx.sleep("nap", timedelta(minutes=30))
            answer = await ctx.wait_signal("go", timeout=timedelta(minutes=20))
            return f"got {answer}"

        handle = await app.start(in_time, timeout=timedelta(hours=1))
        started = clock.now()
        await suspended(app, handle.workflow_id)
        info = await handle.info()
        assert info.wake_at is not None and info.deadline_at is not None
        assert info.wake_at < info.deadline_at  # the sleep's own wake-up
        clock.advance(timedelta(minutes=30))
        for _ in range(2_000):  # the sleep ends; the workflow waits for the signal
            history = await app.store.load_history(handle.workflow_id)
            if len(history.operations) == 2 and handle.workflow_id not in app._runs:
                break
            await asyncio.sleep(0)
        await suspended(app, handle.workflow_id)
        info = await handle.info()
        assert info.wake_at == info.created_at + timedelta(minutes=50)  # the signal's own
        await handle.send_signal("go", "yes")
        assert await ended(handle) == "got yes"
        info = await handle.info()
    assert info.status is WorkflowStatus.COMPLETED
    assert info.finished_at is not None
    assert (info.finished_at - info.created_at) == timedelta(minutes=30)
    assert clock.now() - started == 30 * 60 * 1_000_000


async def test_recovery_after_a_crash_past_the_deadline_times_out(
    store_factory: Callable[[], Store], clock: FakeClock
) -> None:
    """The process dies right after the last step is recorded; its lease expires after
    the deadline, so the recovered run replays both steps without running them and
    times out (compensated) instead of completing."""
    charges: list[str] = []
    shipments: list[str] = []
    refunds: list[str] = []

    async def charge(order: str) -> str:
        charges.append(order)
        return f"payment-{order}"

    async def refund(payment: str) -> None:
        refunds.append(payment)

    async def ship(order: str) -> str:
        shipments.append(order)
        return f"parcel-{order}"

    async with TestDurably(store_factory(), clock=clock) as app:

        @app.workflow(name="checkout")
        async def checkout(ctx: Context, order: str) -> str:
            payment = await ctx.step("charge", charge, order, compensate=refund)
            parcel = await ctx.step("ship", ship, order)
            return f"{payment} {parcel}"

        async with crash_at(app, "ship", when="after") as crash:
            handle = await app.start(checkout, "o-1", timeout=timedelta(seconds=10))
            await crash.wait()
        outcome = await ended(handle)  # type: ignore[arg-type]
        info = await handle.info()
    assert_timed_out(outcome, WorkflowStatus.COMPENSATED)
    assert info.recovery_attempts == 1
    assert (charges, shipments) == (["o-1"], ["o-1"])  # replayed, not run again
    assert refunds == ["payment-o-1"]

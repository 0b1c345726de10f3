"""Durable signals: FIFO inbox, buffering, dedup, durable timeouts, typed payloads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from durably import (
    Context,
    Durably,
    WorkflowFinishedError,
    WorkflowNotFoundError,
    WorkflowStatus,
)
from durably.testing import FakeClock


@dataclass(frozen=True)
class Firmware:
    version: str
    ok: bool


async def test_signal_sent_before_wait_is_consumed_once(app: Durably) -> None:
    """A signal already in the inbox satisfies the wait at once, and only one wait."""
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    @app.workflow()
    async def receiver(ctx: Context) -> list[object]:
        await ctx.step("hold", hold)
        first = await ctx.wait_signal("data")
        second = await ctx.wait_signal("data", timeout=timedelta(seconds=0))
        return [first, second]

    handle = await app.start(receiver)
    await app.send_signal(handle.workflow_id, "data", {"n": 1})
    gate.set()
    assert await handle.result() == [{"n": 1}, None]


async def test_signals_of_one_name_are_consumed_in_order(app: Durably) -> None:
    """Several signals of the same name are consumed first-in, first-out."""
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    @app.workflow()
    async def fifo(ctx: Context) -> list[object]:
        await ctx.step("hold", hold)
        return [await ctx.wait_signal("n") for _ in range(3)]

    handle = await app.start(fifo)
    for value in (1, 2, 3):
        await app.send_signal(handle.workflow_id, "n", value)
    gate.set()
    assert await handle.result() == [1, 2, 3]


async def test_signal_wakes_a_suspended_workflow(
    app_factory: Callable[..., Durably],
) -> None:
    """A workflow that unwound to wait for a signal is re-run when the signal arrives."""
    app = app_factory(inline_wait=0)

    @app.workflow()
    async def suspended(ctx: Context) -> object:
        return await ctx.wait_signal("go")

    async with app:
        handle = await app.start(suspended)
        for _ in range(1000):
            if (
                await handle.status() is WorkflowStatus.SUSPENDED
                and handle.workflow_id not in app._runs
            ):
                break
            await asyncio.sleep(0)
        info = await handle.info()
        assert info.status is WorkflowStatus.SUSPENDED
        assert info.wait_reason is not None
        assert "go" in info.wait_reason
        assert handle.workflow_id not in app._runs
        await app.send_signal(handle.workflow_id, "go", "payload")
        assert await handle.result() == "payload"


async def test_typed_signal_payload_is_decoded_by_payload_type(app: Durably) -> None:
    """payload_type rebuilds a dataclass from the signal's JSON, also on replay."""

    @app.workflow()
    async def provision(ctx: Context) -> Firmware | None:
        return await ctx.wait_signal("firmware_update_complete", payload_type=Firmware)

    handle = await app.start(provision)
    await app.send_signal(handle.workflow_id, "firmware_update_complete", Firmware("1.2", True))
    assert await handle.result() == Firmware("1.2", True)


async def test_wait_timeout_returns_none_and_is_durable(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The wait deadline is recorded once: a restart does not give the wait a new timeout."""

    def register(app: Durably) -> object:
        @app.workflow(name="times-out")
        async def times_out(ctx: Context) -> object:
            return await ctx.wait_signal("never", timeout=timedelta(hours=1))

        return times_out

    first = app_factory(inline_wait=0)
    workflow = register(first)
    async with first:
        handle = await first.start(workflow, workflow_id="t-1")  # type: ignore[arg-type]
        for _ in range(1000):
            if await handle.status() is WorkflowStatus.SUSPENDED:
                break
            await asyncio.sleep(0)
        assert (await handle.info()).wake_at is not None
    clock.advance(timedelta(minutes=59))
    second = app_factory(inline_wait=0)
    register(second)
    async with second:
        assert await second.handle("t-1").status() is WorkflowStatus.SUSPENDED
        clock.advance(timedelta(minutes=2))
        second._notifier.notify_work_due()
        assert await second.handle("t-1").result() is None


async def test_duplicate_signal_with_dedup_key_is_ignored(app: Durably) -> None:
    """A second send with the same dedup_key does nothing and returns False."""
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    @app.workflow()
    async def dedup(ctx: Context) -> list[object]:
        await ctx.step("hold", hold)
        first = await ctx.wait_signal("pay")
        second = await ctx.wait_signal("pay", timeout=0)
        return [first, second]

    handle = await app.start(dedup)
    assert await app.send_signal(handle.workflow_id, "pay", 10, dedup_key="k1") is True
    assert await app.send_signal(handle.workflow_id, "pay", 10, dedup_key="k1") is False
    gate.set()
    assert await handle.result() == [10, None]


async def test_duplicate_signal_without_dedup_key_feeds_the_next_wait(app: Durably) -> None:
    """Without a dedup key both sends are kept and each satisfies one wait."""
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    @app.workflow()
    async def twice(ctx: Context) -> list[object]:
        await ctx.step("hold", hold)
        return [await ctx.wait_signal("pay"), await ctx.wait_signal("pay")]

    handle = await app.start(twice)
    await app.send_signal(handle.workflow_id, "pay", 10)
    await app.send_signal(handle.workflow_id, "pay", 10)
    gate.set()
    assert await handle.result() == [10, 10]


async def test_signal_to_unknown_workflow_is_an_error(app: Durably) -> None:
    """Sending to an id that does not exist raises WorkflowNotFoundError."""
    with pytest.raises(WorkflowNotFoundError):
        await app.send_signal("ghost", "x", 1)


async def test_signal_to_finished_workflow_is_an_error(app: Durably) -> None:
    """Sending to a finished workflow raises WorkflowFinishedError."""

    @app.workflow()
    async def done(ctx: Context) -> int:
        return 1

    handle = await app.start(done)
    await handle.result()
    with pytest.raises(WorkflowFinishedError):
        await app.send_signal(handle.workflow_id, "x", 1)


async def test_two_workflows_waiting_on_the_same_name_get_their_own_payloads(
    app: Durably,
) -> None:
    """Inboxes are per workflow."""

    @app.workflow()
    async def waiter(ctx: Context) -> object:
        return await ctx.wait_signal("ready")

    first = await app.start(waiter)
    second = await app.start(waiter)
    await app.send_signal(second.workflow_id, "ready", "for-second")
    await app.send_signal(first.workflow_id, "ready", "for-first")
    assert await first.result() == "for-first"
    assert await second.result() == "for-second"


async def test_consumed_signal_is_replayed_after_a_restart(
    app_factory: Callable[..., Durably],
) -> None:
    """A consumed signal is recorded: a resumed workflow gets the same payload and does
    not wait again (the seed waited forever here)."""
    gate = asyncio.Event()
    entered = asyncio.Event()

    def register(app: Durably) -> object:
        async def hold(value: object) -> object:
            entered.set()
            await gate.wait()
            return value

        @app.workflow(name="consumes")
        async def consumes(ctx: Context) -> object:
            value = await ctx.wait_signal("in")
            return await ctx.step("hold", hold, value)

        return consumes

    first = app_factory()
    workflow = register(first)
    async with first:
        handle = await first.start(workflow, workflow_id="c-1")  # type: ignore[arg-type]
        await first.send_signal(handle.workflow_id, "in", "once")
        await entered.wait()
    gate.set()
    second = app_factory()
    register(second)
    async with second:
        assert await second.handle("c-1").result() == "once"

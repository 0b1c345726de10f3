"""What a durable sleep leaves in the store: WAITING while it sleeps, COMPLETED (once)
when the workflow has moved past it, on every store."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from durably import Context, Durably, Store, WorkflowStatus
from durably.models import Fence, OperationRecord, OperationStatus
from durably.testing import FakeClock

MINUTE = timedelta(minutes=1)


async def wait_for_status(app: Durably, workflow_id: str, status: WorkflowStatus) -> None:
    """Yield to the loop until the workflow has ``status`` (bounded, no wall clock)."""
    for _ in range(5_000):
        if (await app.get_workflow(workflow_id)).status is status and workflow_id not in app._runs:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{workflow_id} never became {status}")


class CountingWrites:
    """Counts the operations recorded per (workflow, seq)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.writes: Counter[tuple[int, str]] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def record_operation(self, fence: Fence, operation: OperationRecord) -> None:
        self.writes[operation.seq, operation.status] += 1
        await self.inner.record_operation(fence, operation)


async def sleep_record(app: Durably, workflow_id: str, seq: int) -> OperationRecord:
    return (await app.store.load_history(workflow_id)).operations[seq]


async def test_a_short_sleep_is_recorded_completed_when_it_ends(
    app: Durably, clock: FakeClock
) -> None:
    """A sleep waited in memory: WAITING while it sleeps, COMPLETED at its end."""

    @app.workflow()
    async def napper(ctx: Context) -> str:
        await ctx.sleep("nap", timedelta(milliseconds=500))
        return "rested"

    handle = await app.start(napper)
    await clock.wait_for_sleepers(3)
    sleeping = await sleep_record(app, handle.workflow_id, 0)
    assert sleeping.status is OperationStatus.WAITING and sleeping.finished_at is None
    clock.advance(timedelta(milliseconds=500))
    assert await handle.result() == "rested"
    ended = await sleep_record(app, handle.workflow_id, 0)
    assert ended.status is OperationStatus.COMPLETED
    assert ended.wake_at == sleeping.wake_at
    assert ended.started_at == sleeping.started_at
    assert ended.finished_at is not None and ended.finished_at >= ended.wake_at


async def test_a_long_sleep_is_recorded_completed_once_when_the_workflow_moves_on(
    store_factory: Any, clock: FakeClock
) -> None:
    """A sleep that unwound the workflow: still WAITING while it is suspended; the
    replay that wakes it records it COMPLETED; later replays leave that record alone
    (one write for the sleep's end, none per later step)."""
    store = CountingWrites(store_factory())
    app = Durably(store, clock=clock, inline_wait=0)  # type: ignore[arg-type]

    @app.workflow(name="settles")
    async def settles(ctx: Context) -> object:
        await ctx.sleep("settlement", 10 * MINUTE)
        await ctx.step("ship", lambda: "shipped")
        return await ctx.wait_signal("delivered")

    async with app:
        handle = await app.start(settles, workflow_id="order")
        await wait_for_status(app, "order", WorkflowStatus.SUSPENDED)
        assert (await sleep_record(app, "order", 0)).status is OperationStatus.WAITING
        clock.advance(10 * MINUTE)
        for _ in range(5_000):  # until it waits for the signal, past the sleep and the step
            if 1 in (await app.store.load_history("order")).operations:
                break
            await asyncio.sleep(0)
        await wait_for_status(app, "order", WorkflowStatus.SUSPENDED)
        woken = await sleep_record(app, "order", 0)
        assert woken.status is OperationStatus.COMPLETED
        await app.send_signal("order", "delivered", "yes")
        assert await handle.result() == "yes"
        assert await sleep_record(app, "order", 0) == woken
    assert store.writes[0, OperationStatus.WAITING] == 1
    assert store.writes[0, OperationStatus.COMPLETED] == 1
    assert store.writes[1, OperationStatus.COMPLETED] == 1  # the step: one write, as before


async def test_a_sleep_cut_short_by_cancellation_stays_waiting(
    app: Durably, clock: FakeClock
) -> None:
    """A cancelled sleep did not end: its record is not marked COMPLETED."""

    @app.workflow()
    async def napper(ctx: Context) -> str:
        await ctx.sleep("nap", timedelta(milliseconds=500))
        return "rested"

    handle = await app.start(napper)
    await clock.wait_for_sleepers(3)
    await app.cancel(handle.workflow_id)
    await wait_for_status(app, handle.workflow_id, WorkflowStatus.CANCELLED)
    assert (await sleep_record(app, handle.workflow_id, 0)).status is OperationStatus.WAITING

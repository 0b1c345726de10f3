"""Watching from outside a workflow: lists of workflows by status, and a workflow's
recorded operations (the seed's reactive watches of executions by status and of
checkpoints, F-23). ``app.watch(id)`` itself is tested in test_workflows.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from durably import (
    CheckpointInfo,
    Context,
    Durably,
    SyncContext,
    SyncDurably,
    WorkflowNotFoundError,
    WorkflowStatus,
)
from durably.models import OperationKind, OperationStatus
from durably.testing import FakeClock

T = TypeVar("T")


async def next_item(iterator: AsyncIterator[T]) -> T:
    """The iterator's next item, or a failure if none comes (no wall-clock sleeps
    decide the outcome: the bound only keeps a broken test from hanging)."""
    return await asyncio.wait_for(anext(iterator), timeout=30)


async def test_watch_workflows_yields_the_list_then_each_change_of_it(
    app: Durably, clock: FakeClock
) -> None:
    """The suspended workflows now, then the list again when one suspends and when
    one leaves it; a change that does not touch the list yields nothing."""
    gate = asyncio.Event()

    async def wait_for_gate() -> None:
        await gate.wait()

    @app.workflow()
    async def napping(ctx: Context, hours: int) -> int:
        await ctx.sleep("nap", timedelta(hours=hours))
        return hours

    @app.workflow()
    async def busy(ctx: Context) -> None:
        await ctx.step("wait", wait_for_gate)

    watch = app.watch_workflows(status=WorkflowStatus.SUSPENDED)
    try:
        assert await next_item(watch) == []
        first = await app.start(napping, 1, workflow_id="nap-1")
        listed = await next_item(watch)
        assert [(i.workflow_id, i.status) for i in listed] == [("nap-1", WorkflowStatus.SUSPENDED)]
        await app.start(busy, workflow_id="busy")  # RUNNING: not in this list
        await app.start(napping, 2, workflow_id="nap-2")
        assert [i.workflow_id for i in await next_item(watch)] == ["nap-1", "nap-2"]
        clock.advance(timedelta(hours=1))
        assert await first.result() == 1
        assert [i.workflow_id for i in await next_item(watch)] == ["nap-2"]
    finally:
        gate.set()
        await watch.aclose()


async def test_history_lists_every_recorded_operation_in_order(app: Durably) -> None:
    """Steps, a signal wait and the compensations, with their outcome and result."""

    async def undo(value: int) -> None:
        return None

    async def fail() -> None:
        raise ValueError("out of stock")

    @app.workflow()
    async def ordering(ctx: Context) -> None:
        await ctx.step("reserve", lambda: 1, compensate=undo)
        await ctx.step("charge", lambda: 2, compensate=undo)
        await ctx.wait_signal("paid", timeout=timedelta(0))
        await ctx.step("ship", fail)

    handle = await app.start(ordering, workflow_id="ordering")
    with pytest.raises(Exception, match="out of stock"):
        await handle.result()
    history = await app.history("ordering")
    assert all(isinstance(entry, CheckpointInfo) for entry in history)
    assert [(c.seq, c.kind, c.name, c.status) for c in history] == [
        (0, OperationKind.STEP, "reserve", OperationStatus.COMPLETED),
        (1, OperationKind.STEP, "charge", OperationStatus.COMPLETED),
        (2, OperationKind.SIGNAL, "paid", OperationStatus.COMPLETED),
        (3, OperationKind.STEP, "ship", OperationStatus.FAILED),
        # compensations in the order they were registered (they ran in reverse)
        (-1, OperationKind.COMPENSATION, "reserve:compensate", OperationStatus.COMPLETED),
        (-2, OperationKind.COMPENSATION, "charge:compensate", OperationStatus.COMPLETED),
    ]
    assert [c.result_json for c in history[:2]] == ["1", "2"]
    failed = history[3].error
    assert failed is not None and "out of stock" in failed.message


async def test_history_of_an_unknown_workflow_is_an_error(app: Durably) -> None:
    """An unknown id is refused with WorkflowNotFoundError; a bad id with ValueError."""
    with pytest.raises(WorkflowNotFoundError, match="nope"):
        await app.history("nope")
    with pytest.raises(ValueError, match="workflow_id"):
        await app.history(" spaced ")


async def test_watch_history_yields_each_recorded_step_until_the_end(
    app_factory: Callable[..., Durably],
) -> None:
    """The history grows by one entry per recorded step, and the watch ends with the
    workflow; an unknown id yields nothing."""
    app = app_factory()
    gates = [asyncio.Event() for _ in range(3)]

    async def step(index: int) -> int:
        await gates[index].wait()
        return index

    @app.workflow()
    async def stepping(ctx: Context) -> None:
        for index in range(3):
            await ctx.step(f"step-{index}", step, index)

    async with app:
        assert [entry async for entry in app.watch_history("unknown")] == []
        await app.start(stepping, workflow_id="stepping")
        watch = app.watch_history("stepping")
        seen: list[list[str]] = []
        try:
            seen.append([c.name for c in await next_item(watch)])
            for gate in gates:
                gate.set()
                names = [c.name for c in await next_item(watch)]
                seen.append(names)
            rest = [entry async for entry in watch]
        finally:
            await watch.aclose()
    assert seen == [[], ["step-0"], ["step-0", "step-1"], ["step-0", "step-1", "step-2"]]
    assert rest == []


def test_the_sync_app_reads_and_watches_histories_and_lists(tmp_path: Path) -> None:
    """SyncDurably offers the same reads and watches as blocking calls and iterators."""
    with SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}") as app:

        @app.workflow()
        def two_steps(ctx: SyncContext) -> int:
            first = ctx.step("first", lambda: 1)
            return int(ctx.step("second", lambda: first + 1))

        assert app.start(two_steps, workflow_id="two").result() == 2
        assert [c.name for c in app.history("two")] == ["first", "second"]
        histories = app.watch_history("two")
        assert [[c.name for c in h] for h in histories] == [["first", "second"]]
        lists = app.watch_workflows(status=WorkflowStatus.COMPLETED)
        try:
            assert [info.workflow_id for info in next(lists)] == ["two"]
        finally:
            lists.close()  # type: ignore[attr-defined]

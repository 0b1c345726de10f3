"""Deterministic helpers and non-determinism detection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

from durably import Context, Durably, WorkflowStatus


async def test_now_random_and_uuid_replay_the_recorded_values(
    app_factory: Callable[..., Durably],
) -> None:
    """ctx.now(), ctx.random() and ctx.uuid4() return the same values after a restart."""
    gate = asyncio.Event()
    entered = asyncio.Event()
    seen: list[tuple[datetime, float, uuid.UUID]] = []

    def register(app: Durably) -> object:
        async def hold() -> None:
            entered.set()
            await gate.wait()

        @app.workflow(name="helpers")
        async def helpers(ctx: Context) -> str:
            values = (await ctx.now(), await ctx.random(), await ctx.uuid4())
            seen.append(values)
            await ctx.step("hold", hold)
            return str(values[2])

        return helpers

    first = app_factory()
    workflow = register(first)
    async with first:
        await first.start(workflow, workflow_id="d")  # type: ignore[arg-type]
        await entered.wait()
    gate.set()
    second = app_factory()
    register(second)
    async with second:
        assert await second.handle("d").result() == str(seen[0][2])
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert isinstance(seen[1][0], datetime)
    assert isinstance(seen[1][2], uuid.UUID)


async def test_changed_code_parks_the_workflow_with_a_clear_error(
    app_factory: Callable[..., Durably],
) -> None:
    """Replay meeting a different step than recorded parks the workflow (not failed,
    not compensated) and names the position and both operations."""
    gate = asyncio.Event()
    entered = asyncio.Event()
    undone: list[str] = []

    async def hold() -> None:
        entered.set()
        await gate.wait()

    async def first_step() -> int:
        return 1

    async def undo(value: int) -> None:
        undone.append("undo")

    first = app_factory()

    @first.workflow(name="evolving", version="1")
    async def version_one(ctx: Context) -> None:
        await ctx.step("charge", first_step, compensate=undo)
        await ctx.step("hold", hold)

    async with first:
        await first.start(version_one, workflow_id="e")
        await entered.wait()
    gate.set()
    second = app_factory()

    @second.workflow(name="evolving", version="1")
    async def version_two(ctx: Context) -> None:
        await ctx.step("validate", first_step, compensate=undo)
        await ctx.step("hold", hold)

    async with second:
        for _ in range(5_000):
            info = await second.get_workflow("e")
            if info.status is WorkflowStatus.PARKED:
                break
            await asyncio.sleep(0)
    assert info.status is WorkflowStatus.PARKED
    assert info.error is not None
    assert info.error.type == "NonDeterminismError"
    assert "'charge'" in info.error.message
    assert "'validate'" in info.error.message
    assert "#0" in info.error.message
    assert undone == []


async def test_swallowed_non_determinism_still_parks(
    app_factory: Callable[..., Durably],
) -> None:
    """A body that catches NonDeterminismError cannot hide it: the workflow is parked."""
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def hold() -> None:
        entered.set()
        await gate.wait()

    async def value() -> int:
        return 1

    first = app_factory()

    @first.workflow(name="sneaky", version="1")
    async def original(ctx: Context) -> None:
        await ctx.step("a", value)
        await ctx.step("hold", hold)

    async with first:
        await first.start(original, workflow_id="n")
        await entered.wait()
    gate.set()
    second = app_factory()

    @second.workflow(name="sneaky", version="1")
    async def changed(ctx: Context) -> str:
        try:
            await ctx.step("b", value)
        except Exception:
            return "swallowed"
        return "ran"

    async with second:
        for _ in range(5_000):
            info = await second.get_workflow("n")
            if info.status is WorkflowStatus.PARKED:
                break
            await asyncio.sleep(0)
    assert info.status is WorkflowStatus.PARKED


async def test_removed_operations_are_detected_when_the_body_finishes(
    app_factory: Callable[..., Durably],
) -> None:
    """A body that ends without reaching recorded operations is parked."""
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def hold() -> None:
        entered.set()
        await gate.wait()

    async def value() -> int:
        return 1

    first = app_factory()

    @first.workflow(name="shrinking", version="1")
    async def long_version(ctx: Context) -> None:
        await ctx.step("a", value)
        await ctx.step("b", value)
        await ctx.step("hold", hold)

    async with first:
        await first.start(long_version, workflow_id="s")
        await entered.wait()
    gate.set()
    second = app_factory()

    @second.workflow(name="shrinking", version="1")
    async def short_version(ctx: Context) -> int:
        return await ctx.step("a", value)

    async with second:
        for _ in range(5_000):
            info = await second.get_workflow("s")
            if info.status is WorkflowStatus.PARKED:
                break
            await asyncio.sleep(0)
    assert info.status is WorkflowStatus.PARKED
    assert info.error is not None
    assert "'b'" in info.error.message

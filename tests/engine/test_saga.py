"""Saga compensation: reverse order, durable, retried, with a dead-letter status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from durably import (
    Context,
    Durably,
    RetryPolicy,
    Store,
    WorkflowFailedError,
    WorkflowStatus,
)
from durably.models import OperationKind, OperationStatus


async def test_compensations_run_in_reverse_order_with_step_results(app: Durably) -> None:
    """A failure undoes completed steps last-first, each given its step's result."""
    undone: list[str] = []

    async def reserve() -> str:
        return "reservation-1"

    async def charge() -> str:
        return "payment-1"

    async def release(reservation: str) -> None:
        undone.append(f"release {reservation}")

    async def refund(payment: str) -> None:
        undone.append(f"refund {payment}")

    async def ship() -> None:
        raise RuntimeError("no courier")

    @app.workflow()
    async def checkout(ctx: Context) -> None:
        await ctx.step("reserve", reserve, compensate=release)
        await ctx.step("charge", charge, compensate=refund)
        await ctx.step("ship", ship, compensate=lambda _: undone.append("never"))

    handle = await app.start(checkout)
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result()
    assert caught.value.status == WorkflowStatus.COMPENSATED
    assert caught.value.error_message == "no courier"
    assert undone == ["refund payment-1", "release reservation-1"]


async def test_explicit_on_failure_registration_runs_with_its_arguments(app: Durably) -> None:
    """ctx.on_failure registers a compensation with arguments, unwound in order."""
    undone: list[str] = []

    def notify(who: str, why: str) -> None:
        undone.append(f"{who}:{why}")

    @app.workflow()
    async def notifying(ctx: Context) -> None:
        ctx.on_failure(notify, "alice", "first")
        ctx.on_failure(notify, "bob", "second", name="notify-bob")
        raise ValueError("stop")

    with pytest.raises(WorkflowFailedError):
        await app.run(notifying)
    assert undone == ["bob:second", "alice:first"]


async def test_failure_without_compensations_is_failed(app: Durably) -> None:
    """A workflow with nothing to undo ends FAILED, not COMPENSATED."""

    @app.workflow()
    async def plain(ctx: Context) -> None:
        raise ValueError("nope")

    handle = await app.start(plain)
    with pytest.raises(WorkflowFailedError):
        await handle.result()
    assert await handle.status() is WorkflowStatus.FAILED


async def test_failing_compensation_is_retried_then_dead_lettered(
    app_factory: Callable[..., Durably], store_factory: Callable[[], Store]
) -> None:
    """A compensation that keeps failing is retried, the others still run, and the
    workflow ends COMPENSATION_FAILED with every error kept."""
    calls: list[str] = []
    app = app_factory(compensation_retry=RetryPolicy.fixed(5, 0))
    await app.open()

    async def step_a() -> int:
        return 1

    async def step_b() -> int:
        return 2

    async def undo_a(value: int) -> None:
        calls.append("undo_a")

    async def undo_b(value: int) -> None:
        calls.append("undo_b")
        raise ConnectionError("refund service down")

    async def boom() -> None:
        raise ValueError("original failure")

    @app.workflow()
    async def saga(ctx: Context) -> None:
        await ctx.step("a", step_a, compensate=undo_a)
        await ctx.step("b", step_b, compensate=undo_b)
        ctx.on_failure(undo_b, 0, name="undo-b-again", retry=RetryPolicy.fixed(3, 0))
        await ctx.step("boom", boom)

    handle = await app.start(saga)
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result()
    assert caught.value.status == WorkflowStatus.COMPENSATION_FAILED
    assert "original failure" in (caught.value.error_message or "")
    assert "refund service down" in (caught.value.error_message or "")
    assert calls.count("undo_b") == 3 + 5
    assert calls[-1] == "undo_a"
    history = await app.store.load_history(handle.workflow_id)
    compensations = {
        op.name: op for op in history.operations.values() if op.kind is OperationKind.COMPENSATION
    }
    assert compensations["a:compensate"].status is OperationStatus.COMPLETED
    assert compensations["b:compensate"].status is OperationStatus.FAILED
    assert compensations["b:compensate"].attempts == 5
    await app.close()


async def test_compensation_resumes_after_a_stop_without_rerunning_finished_ones(
    app_factory: Callable[..., Durably],
) -> None:
    """An app stopped during compensation leaves COMPENSATING; the next app finishes
    the remaining compensations and never re-runs a finished one."""
    calls: list[str] = []
    gate = asyncio.Event()
    entered = asyncio.Event()

    def register(app: Durably) -> object:
        async def step_a() -> str:
            return "a"

        async def step_b() -> str:
            return "b"

        async def undo_a(value: str) -> None:
            calls.append("undo_a")

        async def undo_b(value: str) -> None:
            calls.append("undo_b")

        async def undo_c(value: str) -> None:
            calls.append("undo_c")
            entered.set()
            await gate.wait()

        async def step_c() -> str:
            return "c"

        async def fail() -> None:
            raise RuntimeError("fail")

        @app.workflow(name="saga")
        async def saga(ctx: Context) -> None:
            await ctx.step("a", step_a, compensate=undo_a)
            await ctx.step("b", step_b, compensate=undo_b)
            await ctx.step("c", step_c, compensate=undo_c)
            await ctx.step("fail", fail)

        return saga

    first = app_factory()
    workflow = register(first)
    async with first:
        await first.start(workflow, workflow_id="s-1")  # type: ignore[arg-type]
        await entered.wait()
        assert (await first.get_workflow("s-1")).status is WorkflowStatus.COMPENSATING
    gate.set()
    second = app_factory()
    register(second)
    async with second:
        with pytest.raises(WorkflowFailedError) as caught:
            await second.handle("s-1").result()
    assert caught.value.status == WorkflowStatus.COMPENSATED
    assert calls == ["undo_c", "undo_c", "undo_b", "undo_a"]


async def test_compensation_of_a_failed_step_is_never_called(app: Durably) -> None:
    """Only steps that completed are compensated."""
    undone: list[str] = []

    async def fail() -> None:
        raise RuntimeError("x")

    @app.workflow()
    async def failing(ctx: Context) -> None:
        await ctx.step("fail", fail, compensate=lambda _: undone.append("fail"))

    with pytest.raises(WorkflowFailedError):
        await app.run(failing)
    assert undone == []

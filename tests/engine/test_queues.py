"""Queues: enqueued workflows run within their queue's limits, highest priority first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from durably import ConfigurationError, Context, Durably, WorkflowStatus
from durably.testing import FakeClock


async def settle(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition`` holds (bounded, no wall clock)."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


class Gate:
    """Steps that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.running = 0
        self.most = 0
        self.order: list[str] = []

    async def step(self, name: str) -> str:
        self.order.append(name)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.open.wait()
        finally:
            self.running -= 1
        return name


def gated_app(app: Durably, gate: Gate) -> None:
    @app.workflow(name="gated")
    async def gated(ctx: Context, name: str) -> str:
        return await ctx.step("wait", gate.step, name)


async def test_concurrency_limit_holds_and_finishing_frees_a_slot(app: Durably) -> None:
    """Six workflows on a queue of concurrency 2: two run; the rest wait; all finish."""
    gate = Gate()
    gated_app(app, gate)
    queue = app.queue("pairs", concurrency=2)
    handles = [await app.enqueue("gated", f"job-{n}", queue=queue) for n in range(6)]
    await settle(lambda: gate.running == 2)
    for _ in range(200):
        await asyncio.sleep(0)
    assert gate.running == 2
    statuses = [await handle.status() for handle in handles]
    assert statuses.count(WorkflowStatus.PENDING) == 4
    gate.open.set()
    assert sorted([await handle.result() for handle in handles]) == [f"job-{n}" for n in range(6)]
    assert gate.most == 2


async def test_higher_priority_runs_first(app: Durably) -> None:
    """With one slot taken, later enqueues run by priority, not by arrival."""
    gate = Gate()
    gated_app(app, gate)
    queue = app.queue("single", concurrency=1)
    first = await app.enqueue("gated", "first", queue=queue)
    await settle(lambda: gate.running == 1)
    low = await app.enqueue("gated", "low", queue=queue, priority=0)
    high = await app.enqueue("gated", "high", queue=queue, priority=9)
    gate.open.set()
    for handle in (first, low, high):
        await handle.result()
    assert gate.order == ["first", "high", "low"]


async def test_rate_limit_spaces_starts_on_the_virtual_clock(
    app: Durably, clock: FakeClock
) -> None:
    """2 starts per 10 s: five workflows start 2, then 2 more 10 s later, then 1."""
    gate = Gate()
    gate.open.set()
    gated_app(app, gate)
    queue = app.queue("slow", rate_limit=2, per=timedelta(seconds=10))
    handles = [await app.enqueue("gated", f"job-{n}", queue=queue) for n in range(5)]

    async def completed() -> int:
        return [await h.status() for h in handles].count(WorkflowStatus.COMPLETED)

    for expected in (2, 4, 5):
        for _ in range(2_000):
            if await completed() == expected:
                break
            await asyncio.sleep(0)
        assert await completed() == expected
        clock.advance(timedelta(seconds=10))


async def test_a_client_enqueues_and_a_worker_with_the_queue_runs_it(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The client (worker=False) only records; the worker declaring the queue runs it
    (told at once through PostgreSQL's NOTIFY, at its next poll on other stores)."""
    client, worker = app_factory(worker=False), app_factory()
    for each in (client, worker):

        @each.workflow(name="double")
        async def double(ctx: Context, n: int) -> int:
            return 2 * n

        each.queue("math", worker_concurrency=1)
    async with worker, client:
        handle = await client.enqueue("double", 21, queue="math", workflow_id="q-1")
        result = asyncio.ensure_future(handle.result())
        for _ in range(100):
            if result.done():
                break
            await clock.wait_for_sleepers(1)
            clock.advance(timedelta(seconds=1))  # the worker's poll interval
            for _ in range(50):
                await asyncio.sleep(0)
        assert await result == 42


async def test_undeclared_queues_and_conflicting_declarations_are_refused(
    app: Durably,
) -> None:
    """Typos do not create queues nobody claims; a queue has one set of limits."""

    @app.workflow(name="noop")
    async def noop(ctx: Context) -> None:
        return None

    app.queue("mail", concurrency=3)
    assert app.queue("mail", concurrency=3).concurrency == 3
    with pytest.raises(ConfigurationError, match="already declared"):
        app.queue("mail", concurrency=4)
    with pytest.raises(ConfigurationError, match=r"not declared.*app\.queue\('mial'"):
        await app.enqueue("noop", queue="mial")
    with pytest.raises(ConfigurationError, match="positive integer"):
        app.queue("broken", rate_limit=0)
    assert await app.list_workflows() == []

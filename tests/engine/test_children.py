"""Child workflows, asyncio.gather over steps and children, and ctx.map, on every store."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from logging import ERROR
from pathlib import Path
from typing import Any

import pytest

from durably import (
    ChildHandle,
    ConfigurationError,
    Context,
    Durably,
    ItemStatus,
    MapFailedError,
    SqliteStore,
    SyncContext,
    WorkflowConflictError,
    WorkflowFailedError,
    WorkflowStatus,
)
from durably.admin.actions import cancel_workflow
from durably.children import PARENT_SIGNAL, child_signal
from durably.models import OperationKind, OperationStatus
from durably.testing import FakeClock


async def wait_for_status(app: Durably, workflow_id: str, status: WorkflowStatus) -> None:
    """Yield to the loop until the workflow has ``status`` and no run of it is left."""
    for _ in range(20_000):
        record = await app.store.get_workflow(workflow_id)
        if record is not None and record.status is status and workflow_id not in app._runs:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{workflow_id} never became {status}")


async def kinds(app: Durably, workflow_id: str) -> list[tuple[int, str, str]]:
    """The recorded body operations of a workflow as (seq, kind, name)."""
    history = await app.store.load_history(workflow_id)
    return [
        (seq, str(operation.kind), operation.name)
        for seq, operation in sorted(history.operations.items())
        if seq >= 0
    ]


# -- child workflows ------------------------------------------------------------------------


async def test_children_on_a_queue_run_within_its_limits(app: Durably) -> None:
    """queue= puts each child on a declared queue: the children run as its limit allows
    (one at a time here) and the parent gets every result; an undeclared queue is
    refused at the call."""
    running: list[int] = []
    most_at_once = 0
    app.queue("one-at-a-time", concurrency=1)

    async def work(n: int) -> int:
        nonlocal most_at_once
        running.append(n)
        most_at_once = max(most_at_once, len(running))
        for _ in range(20):  # let the other children run, if the queue allowed it
            await asyncio.sleep(0)
        running.remove(n)
        return n * 10

    @app.workflow(name="queued-child")
    async def queued_child(ctx: Context, n: int) -> int:
        return await ctx.step("work", work, n)

    @app.workflow(name="fan-out")
    async def fan_out(ctx: Context) -> list[int]:
        handles = [await ctx.start_child(queued_child, n, queue="one-at-a-time") for n in range(3)]
        last = await ctx.run_child(queued_child, 3, queue="one-at-a-time", priority=5)
        return [*await asyncio.gather(*(handle.result() for handle in handles)), last]

    @app.workflow(name="misqueued")
    async def misqueued(ctx: Context) -> str:
        try:
            await ctx.start_child(queued_child, 0, queue="undeclared")
        except ConfigurationError as error:
            return str(error)
        return "started"

    assert await app.run(fan_out, workflow_id="fan") == [0, 10, 20, 30]
    assert most_at_once == 1
    for n in range(4):
        info = await app.get_workflow(f"fan:{n}")
        assert (info.queue, info.status) == ("one-at-a-time", WorkflowStatus.COMPLETED)
    assert "queue 'undeclared' is not declared" in await app.run(misqueued)


async def test_child_result_is_returned_to_the_parent(app: Durably) -> None:
    """start_child creates the child under a deterministic id; result() returns its
    result, and both are recorded in the parent's history."""

    linked = asyncio.Event()

    async def squared(n: int) -> int:
        # The child ends only once its parent holds the handle (the link is written):
        # a child that ended first is not linked (its parent reads its record instead).
        await linked.wait()
        return n * n

    @app.workflow(name="square")
    async def square(ctx: Context, n: int) -> int:
        return await ctx.step("square", squared, n)

    @app.workflow(name="parent")
    async def parent(ctx: Context, n: int) -> int:
        handle = await ctx.start_child(square, n)
        linked.set()
        assert handle.workflow_id == f"{ctx.workflow_id}:0"
        return await handle.result() + 1

    assert await app.run(parent, 7, workflow_id="p") == 50
    assert (await app.get_workflow("p:0")).status is WorkflowStatus.COMPLETED
    assert await kinds(app, "p") == [(0, "CHILD", "square"), (1, "CHILD_RESULT", "p:0")]
    history = await app.store.load_history("p")
    assert json.loads(history.operations[0].result or "") == "p:0"
    signals = await app.store.list_signals("p:0")
    assert [(s.name, s.payload) for s in signals] == [(PARENT_SIGNAL, '"p"')]


async def test_child_failure_is_caught_by_the_parent_and_replays_the_same(
    app: Durably, clock: FakeClock
) -> None:
    """A failed child surfaces as WorkflowFailedError (cause rebuilt); after a replay
    the parent sees the very same error without the child running again."""
    runs: list[int] = []

    @app.workflow(name="failing-child")
    async def failing(ctx: Context) -> None:
        runs.append(1)
        raise PermissionError("card declined")

    @app.workflow(name="careful-parent")
    async def careful(ctx: Context) -> str:
        try:
            await ctx.run_child(failing)
        except WorkflowFailedError as error:
            seen = f"{error.status} {error.error_type} {type(error.__cause__).__name__}: {error}"
        await ctx.sleep("later", timedelta(hours=1))  # unwinds: the rest is a replay
        return seen

    handle = await app.start(careful, workflow_id="careful")
    await wait_for_status(app, "careful", WorkflowStatus.SUSPENDED)
    clock.advance(timedelta(hours=1))
    result = await handle.result()
    assert result == (
        "FAILED PermissionError PermissionError: child workflow 'careful:0' ended FAILED: "
        "PermissionError: card declined"
    )
    assert runs == [1]
    history = await app.store.load_history("careful")
    assert history.operations[1].status is OperationStatus.FAILED


async def test_child_ids_are_deterministic_and_children_are_created_once(
    app: Durably, clock: FakeClock
) -> None:
    """Replaying a parent finds its children instead of creating new ones; an explicit
    id taken by other input is a conflict the parent can catch."""
    runs: list[str] = []

    @app.workflow(name="echo")
    async def echo(ctx: Context, text: str) -> str:
        runs.append(text)
        return text

    @app.workflow(name="many")
    async def many(ctx: Context) -> list[str]:
        first = await ctx.start_child(echo, "a")
        second = await ctx.start_child(echo, "b", workflow_id="echo-b")
        try:
            await ctx.start_child(echo, "other input", workflow_id="echo-b")
            conflict = "no conflict"
        except WorkflowConflictError:
            conflict = "conflict"
        await ctx.sleep("later", timedelta(hours=1))
        return [first.workflow_id, second.workflow_id, await first.result(), conflict]

    handle = await app.start(many, workflow_id="m")
    await wait_for_status(app, "m", WorkflowStatus.SUSPENDED)
    clock.advance(timedelta(hours=1))
    assert await handle.result() == ["m:0", "echo-b", "a", "conflict"]
    assert sorted(runs) == ["a", "b"]
    assert sorted(info.workflow_id for info in await app.list_workflows()) == [
        "echo-b",
        "m",
        "m:0",
    ]
    history = await app.store.load_history("m")
    assert history.operations[2].kind is OperationKind.CHILD
    assert history.operations[2].status is OperationStatus.FAILED


async def test_parent_is_suspended_while_its_child_runs_long(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """A parent waiting for a child holds no memory: it unwinds, and the child's end
    wakes it (the timer safety net is not needed: the clock never passes it)."""
    app = app_factory(inline_wait=0)

    @app.workflow(name="slow-child")
    async def slow_child(ctx: Context) -> str:
        await ctx.sleep("work", timedelta(hours=5))
        return "done"

    @app.workflow(name="waiting-parent")
    async def waiting(ctx: Context) -> str:
        return "child " + await ctx.run_child(slow_child)

    async with app:
        handle = await app.start(waiting, workflow_id="w")
        await wait_for_status(app, "w", WorkflowStatus.SUSPENDED)
        await wait_for_status(app, "w:0", WorkflowStatus.SUSPENDED)
        parent = await app.get_workflow("w")
        assert parent.wait_reason is not None and "child workflow 'w:0'" in parent.wait_reason
        assert not app._runs
        clock.advance(timedelta(hours=5))
        assert await handle.result() == "child done"


async def test_child_end_wakes_a_suspended_parent_without_the_timer(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The reserved signal, not the recheck timer, wakes the parent: the virtual clock
    never moves here."""
    app = app_factory(inline_wait=0)

    @app.workflow(name="approval")
    async def approval(ctx: Context) -> object:
        return await ctx.wait_signal("approve")

    @app.workflow(name="asks")
    async def asks(ctx: Context) -> object:
        return await ctx.run_child(approval)

    async with app:
        handle = await app.start(asks, workflow_id="asks")
        await wait_for_status(app, "asks", WorkflowStatus.SUSPENDED)
        await wait_for_status(app, "asks:0", WorkflowStatus.SUSPENDED)
        parent = await app.get_workflow("asks")
        assert parent.wake_at is not None and parent.wake_at > parent.updated_at
        await app.send_signal("asks:0", "approve", "yes")
        assert await handle.result() == "yes"
        signals = await app.store.list_signals("asks")
        assert [signal.name for signal in signals] == [child_signal("asks:0")]


async def test_a_top_level_workflow_looks_for_a_parent_only_once_one_linked_to_it(
    app_factory: Callable[..., Durably], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow started here as a top-level one reads no inbox at its end to find a
    parent; one that a parent here adopts as its child while it runs tells that parent
    at its end (the virtual clock never moves: the recheck timer cannot help)."""
    app = app_factory(inline_wait=0)
    release = asyncio.Event()

    async def hold() -> str:
        await release.wait()
        return "held"

    @app.workflow(name="quick")
    async def quick(ctx: Context) -> str:
        return "quick"

    @app.workflow(name="held")
    async def held(ctx: Context) -> str:
        return await ctx.step("hold", hold)

    @app.workflow(name="adopter")
    async def adopter(ctx: Context) -> str:
        return "adopted " + await ctx.run_child(held, workflow_id="solo")

    inbox_reads: list[str] = []
    list_signals = app.store.list_signals

    async def counted(workflow_id: str) -> list[Any]:
        inbox_reads.append(workflow_id)
        return await list_signals(workflow_id)

    monkeypatch.setattr(app.store, "list_signals", counted)
    async with app:
        assert await app.run(quick, workflow_id="quick") == "quick"
        assert inbox_reads == []
        solo = await app.start(held, workflow_id="solo")
        parent = await app.start(adopter, workflow_id="adopter")
        await wait_for_status(app, "adopter", WorkflowStatus.SUSPENDED)
        release.set()
        assert await solo.result() == "held"
        assert await parent.result() == "adopted held"
        assert "solo" in inbox_reads


async def test_child_run_by_another_process_wakes_its_parent(
    app_factory: Callable[..., Durably],
) -> None:
    """The parent's first process stops; another one sharing the store runs the child
    to its end, which wakes the parent there."""

    def register(app: Durably) -> Any:
        @app.workflow(name="gate")
        async def gate(ctx: Context) -> object:
            return await ctx.wait_signal("open")

        @app.workflow(name="holder")
        async def holder(ctx: Context) -> str:
            return f"gate said {await ctx.run_child(gate)}"

        return holder

    first = app_factory(inline_wait=0, executor_id="first")
    holder = register(first)
    async with first:
        await first.start(holder, workflow_id="h")
        await wait_for_status(first, "h", WorkflowStatus.SUSPENDED)
        await wait_for_status(first, "h:0", WorkflowStatus.SUSPENDED)
    second = app_factory(inline_wait=0, executor_id="second")
    register(second)
    async with second:
        await second.send_signal("h:0", "open", "wide")
        assert await second.handle("h").result() == "gate said wide"
        assert (await second.get_workflow("h:0")).status is WorkflowStatus.COMPLETED


async def test_cancelling_a_parent_cancels_its_unfinished_children(
    app_factory: Callable[..., Durably],
) -> None:
    """Cancellation goes down the tree: waiting children and grandchildren are
    cancelled, a running one is stopped, a finished one is left alone."""
    app = app_factory(inline_wait=0)
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    @app.workflow(name="quick")
    async def quick(ctx: Context) -> str:
        return "quick"

    @app.workflow(name="waits")
    async def waits(ctx: Context) -> object:
        return await ctx.wait_signal("never")

    @app.workflow(name="middle")
    async def middle(ctx: Context) -> object:
        return await ctx.run_child(waits)

    @app.workflow(name="busy")
    async def busy(ctx: Context) -> None:
        await ctx.step("forever", forever)

    @app.workflow(name="root")
    async def root(ctx: Context) -> None:
        done = await ctx.run_child(quick)
        assert done == "quick"
        await asyncio.gather(ctx.run_child(middle), ctx.run_child(busy))

    async with app:
        await app.start(root, workflow_id="r")
        await started.wait()
        await wait_for_status(app, "r", WorkflowStatus.SUSPENDED)
        await wait_for_status(app, "r:2", WorkflowStatus.SUSPENDED)
        await wait_for_status(app, "r:2:0", WorkflowStatus.SUSPENDED)
        assert await app.cancel("r") is WorkflowStatus.CANCELLED
        await stopped.wait()
        for workflow_id in ("r:2", "r:2:0", "r:4"):
            await wait_for_status(app, workflow_id, WorkflowStatus.CANCELLED)
        assert (await app.get_workflow("r:0")).status is WorkflowStatus.COMPLETED


async def test_cancelling_a_running_parent_from_the_operator_tools_cancels_children(
    app_factory: Callable[..., Durably],
) -> None:
    """The runner's end of a cancelled parent, and the operators' cancel (which needs no
    app), both reach the children."""
    app = app_factory(inline_wait=0)
    blocked = asyncio.Event()

    async def block() -> None:
        blocked.set()
        await asyncio.Event().wait()

    @app.workflow(name="idle")
    async def idle(ctx: Context) -> object:
        return await ctx.wait_signal("never")

    @app.workflow(name="running-parent")
    async def running_parent(ctx: Context) -> None:
        await ctx.start_child(idle)
        await ctx.step("block", block)

    @app.workflow(name="waiting-parent")
    async def waiting_parent(ctx: Context) -> object:
        return await ctx.run_child(idle)

    async with app:
        await app.start(running_parent, workflow_id="run")
        await blocked.wait()
        await wait_for_status(app, "run:0", WorkflowStatus.SUSPENDED)
        await app.cancel("run")  # the parent is running: its runner ends it
        await wait_for_status(app, "run", WorkflowStatus.CANCELLED)
        await wait_for_status(app, "run:0", WorkflowStatus.CANCELLED)

        await app.start(waiting_parent, workflow_id="wait")
        await wait_for_status(app, "wait", WorkflowStatus.SUSPENDED)
        await wait_for_status(app, "wait:0", WorkflowStatus.SUSPENDED)
        record = await cancel_workflow(app.store, "wait", now=app._clock.now())
        assert record.status is WorkflowStatus.CANCELLED
        await wait_for_status(app, "wait:0", WorkflowStatus.CANCELLED)


async def test_reserved_signal_names_are_refused(app: Durably) -> None:
    """Users cannot send or wait for durably's own signals."""

    @app.workflow(name="listener")
    async def listener(ctx: Context) -> str:
        try:
            await ctx.wait_signal(child_signal("x"))
        except ValueError as error:
            return str(error)
        return "waited"

    assert "reserved" in await app.run(listener, workflow_id="l")
    with pytest.raises(ValueError, match="reserved"):
        await app.send_signal("l", PARENT_SIGNAL, "x")


async def test_sync_workflow_starts_children_and_maps(app: Durably) -> None:
    """A plain def workflow has the same operations through its SyncContext."""

    @app.workflow(name="triple")
    def triple(ctx: SyncContext, n: int) -> int:
        return n * 3

    @app.workflow(name="sync-parent")
    def sync_parent(ctx: SyncContext) -> list[int]:
        handle = ctx.start_child(triple, 1)
        mapped = ctx.map(triple, [2, 3], max_concurrency=1)
        doubled = ctx.map(lambda n: n * 2, [5], name="double")
        return [handle.result(), ctx.run_child(triple, 4), *mapped.values, *doubled.values]

    assert await app.run(sync_parent, workflow_id="s") == [3, 12, 6, 9, 10]
    assert [kind for _, kind, _ in await kinds(app, "s")] == [
        "CHILD",
        "CHILD",
        "CHILD_RESULT",
        "CHILD",
        "CHILD_RESULT",
        "MAP",
        "STEP",
        "MAP",
        "CHILD_RESULT",
        "CHILD",
        "CHILD_RESULT",
    ]


# -- asyncio.gather ------------------------------------------------------------------------


async def test_gather_of_steps_and_children_numbers_in_call_order_and_survives_a_restart(
    app_factory: Callable[..., Durably],
) -> None:
    """Operations started together are numbered in call order; after the process stops
    mid-gather, a new one replays what was recorded and runs only the rest."""
    calls: list[str] = []
    release = asyncio.Event()

    def register(app: Durably) -> Any:
        async def fetch(what: str) -> str:
            calls.append(what)
            return what.upper()

        async def slow() -> str:
            calls.append("slow")
            await release.wait()
            return "SLOW"

        @app.workflow(name="leaf")
        async def leaf(ctx: Context, n: int) -> int:
            calls.append(f"leaf {n}")
            return n + 100

        @app.workflow(name="fan")
        async def fan(ctx: Context) -> list[object]:
            early = await ctx.start_child(leaf, 0)
            results = await asyncio.gather(
                ctx.step("a", fetch, "a"),
                ctx.run_child(leaf, 1),
                early.result(),
                ctx.step("slow", slow),
                ctx.step("b", fetch, "b"),
            )
            return list(results)

        return fan

    first = app_factory(executor_id="one")
    fan = register(first)
    async with first:
        await first.start(fan, workflow_id="f")
        for _ in range(20_000):
            recorded = {seq for seq, _, _ in await kinds(first, "f")}
            if {0, 1, 2, 3, 4, 6} <= recorded:
                break
            await asyncio.sleep(0)
        assert 5 not in recorded
    assert sorted(calls) == ["a", "b", "leaf 0", "leaf 1", "slow"]
    second = app_factory(executor_id="two")
    register(second)
    release.set()
    async with second:
        assert await second.handle("f").result() == ["A", 101, 100, "SLOW", "B"]
        assert await kinds(second, "f") == [
            (0, "CHILD", "leaf"),
            (1, "STEP", "a"),
            (2, "CHILD", "leaf"),
            (3, "CHILD_RESULT", "f:2"),
            (4, "CHILD_RESULT", "f:0"),
            (5, "STEP", "slow"),
            (6, "STEP", "b"),
        ]
    assert sorted(calls) == ["a", "b", "leaf 0", "leaf 1", "slow", "slow"]


# -- ctx.map ---------------------------------------------------------------------------------


async def test_map_runs_at_most_max_concurrency_items_at_once(app: Durably) -> None:
    """Items start in input order, never more than max_concurrency at once, and the
    results come back in input order."""
    running: list[int] = []
    peak: list[int] = [0]

    async def work(n: int) -> int:
        running.append(n)
        peak[0] = max(peak[0], len(running))
        for _ in range(5):
            await asyncio.sleep(0)
        running.remove(n)
        return n * 10

    @app.workflow(name="bounded")
    async def bounded(ctx: Context) -> list[int]:
        result = await ctx.map(work, range(7), max_concurrency=3)
        return [item.value for item in result]

    assert await app.run(bounded) == [0, 10, 20, 30, 40, 50, 60]
    assert peak[0] == 3


async def test_map_stops_once_min_successes_is_reached(app: Durably) -> None:
    """With min_successes the remaining items are skipped: never started, or cancelled
    (a child still running is cancelled too)."""
    ran: list[int] = []

    async def attempt(n: int) -> int:
        ran.append(n)
        if n == 1:
            raise ConnectionError("unreachable")
        return n

    @app.workflow(name="slow-leaf")
    async def slow_leaf(ctx: Context, n: int) -> int:
        if n > 0:
            await ctx.wait_signal("never")
        return n

    @app.workflow(name="enough")
    async def enough(ctx: Context) -> list[str]:
        steps = await ctx.map(attempt, [0, 1, 2, 3, 4], max_concurrency=1, min_successes=2)
        children = await ctx.map(slow_leaf, [5, 0, 6], min_successes=1)
        return [str(item.status) for item in [*steps, *children]] + [type(steps[1].error).__name__]

    assert await app.run(enough, workflow_id="e") == [
        "COMPLETED",
        "FAILED",
        "COMPLETED",
        "SKIPPED",
        "SKIPPED",
        "SKIPPED",
        "COMPLETED",
        "SKIPPED",
        "ConnectionError",
    ]
    assert ran == [0, 1, 2]
    for skipped_child in ("e:6", "e:10"):
        await wait_for_status(app, skipped_child, WorkflowStatus.CANCELLED)


async def test_map_raises_when_more_items_fail_than_tolerated(
    app: Durably, clock: FakeClock
) -> None:
    """Exceeding tolerated_failures raises MapFailedError with every outcome, the same
    after a replay."""
    ran: list[int] = []

    async def check(n: int) -> int:
        ran.append(n)
        if n % 2:
            raise ValueError(f"odd {n}")
        return n

    @app.workflow(name="strict")
    async def strict(ctx: Context) -> str:
        try:
            await ctx.map(check, [0, 1, 2, 3, 4, 5], max_concurrency=1, tolerated_failures=1)
        except MapFailedError as error:
            outcome = f"{[str(i.status)[0] for i in error.result or ()]} {error}"
        await ctx.sleep("later", timedelta(hours=1))
        return outcome

    handle = await app.start(strict, workflow_id="strict")
    await wait_for_status(app, "strict", WorkflowStatus.SUSPENDED)
    clock.advance(timedelta(hours=1))
    assert await handle.result() == (
        "['C', 'F', 'C', 'F', 'S', 'S'] ctx.map 'check' failed: 2 of 6 item(s) failed and "
        "2 completed, but it tolerates 1 failure(s); first failure (item 1): ValueError: odd 1"
    )
    assert ran == [0, 1, 2, 3]
    history = await app.store.load_history("strict")
    decision = history.operations[6]
    assert (decision.kind, decision.status) == (OperationKind.MAP, OperationStatus.FAILED)
    assert json.loads(decision.result or "")["settled"] == [0, 1, 2, 3]


async def test_map_replays_its_recorded_decision(app: Durably, clock: FakeClock) -> None:
    """A replay settles exactly the recorded items, whatever order they finish in now,
    and runs nothing again."""
    ran: list[str] = []
    gate = asyncio.Event()

    async def first_slow(name: str) -> str:
        ran.append(name)
        if name == "slow":
            await gate.wait()
        return name

    @app.workflow(name="race")
    async def race(ctx: Context) -> list[str]:
        result = await ctx.map(first_slow, ["slow", "fast"], min_successes=1)
        gate.set()
        await ctx.sleep("later", timedelta(hours=1))
        return [str(item.status) for item in result]

    handle = await app.start(race, workflow_id="race")
    await wait_for_status(app, "race", WorkflowStatus.SUSPENDED)
    clock.advance(timedelta(hours=1))
    assert await handle.result() == [ItemStatus.SKIPPED, ItemStatus.COMPLETED]
    assert ran == ["slow", "fast"]


def waiting_on_the_clock(clock: FakeClock) -> set[str]:
    """The ids of the workflows with an operation waiting on the clock in memory."""
    return {
        str(getattr(sleeper.workflow_context, "workflow_id", "")) for sleeper in clock.sleepers()
    }


@pytest.mark.parametrize("max_concurrency", [None, 1], ids=["all-at-once", "one-at-a-time"])
async def test_closing_the_app_mid_map_logs_nothing_and_the_map_resumes(
    app_factory: Callable[..., Durably],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    max_concurrency: int | None,
) -> None:
    """Closing the app while a map waits for its children stops its items quietly (no
    "Task exception was never retrieved"); reopened, the app resumes the map."""

    def register(app: Durably) -> None:
        @app.workflow(name="approval")
        async def approval(ctx: Context, who: str) -> str:
            return f"{who}: {await ctx.wait_signal('approve')}"

        @app.workflow(name="approvals")
        async def approvals(ctx: Context) -> list[str]:
            mapped = await ctx.map("approval", ["ann", "bob"], max_concurrency=max_concurrency)
            return mapped.values

    expected = {"m", "m:0"} if max_concurrency == 1 else {"m", "m:0", "m:2"}
    first = app_factory(inline_wait=timedelta(hours=1), executor_id="host")
    register(first)
    async with first:
        await first.start("approvals", workflow_id="m")
        for _ in range(20_000):  # until the map and its children wait in memory
            if expected <= waiting_on_the_clock(clock):
                break
            await asyncio.sleep(0)
        assert expected <= waiting_on_the_clock(clock)
    gc.collect()  # an exception nobody retrieved is logged when its task is collected
    await asyncio.sleep(0)
    assert [record.getMessage() for record in caplog.records if record.levelno >= ERROR] == []

    second = app_factory(inline_wait=timedelta(hours=1), executor_id="host")
    register(second)
    async with second:
        await second.send_signal("m:0", "approve", "yes")
        for _ in range(20_000):  # one at a time: bob's child starts once ann's ended
            if await second.store.get_workflow("m:2") is not None:
                break
            await asyncio.sleep(0)
        await second.send_signal("m:2", "approve", "no")
        assert await second.handle("m").result() == ["ann: yes", "bob: no"]


async def test_map_policy_values_are_checked_at_the_call(app: Durably) -> None:
    """Bad policy values raise a clear ValueError (or TypeError) before anything runs."""

    @app.workflow(name="bad-policies")
    async def bad_policies(ctx: Context) -> list[str]:
        messages = []
        for options in (
            {"max_concurrency": 0},
            {"min_successes": 0},
            {"min_successes": 3},
            {"tolerated_failures": -1},
            {"max_concurrency": "2"},
        ):
            try:
                await ctx.map(str, [1, 2], **options)
            except (ValueError, TypeError) as error:
                messages.append(f"{type(error).__name__}: {error}")
        return messages

    assert await app.run(bad_policies) == [
        "ValueError: ctx.map: max_concurrency must be at least 1, got 0 (pass None for no limit)",
        "ValueError: ctx.map: min_successes must be at least 1, got 0 (pass None for no limit)",
        "ValueError: ctx.map: min_successes=3 can never be reached with 2 item(s); pass at "
        "most 2, or None to run every item",
        "ValueError: ctx.map: tolerated_failures must be at least 0, got -1 (pass None for "
        "no limit)",
        "TypeError: ctx.map: max_concurrency must be an integer or None, got '2'",
    ]


async def test_map_uses_a_declared_steps_options(app: Durably) -> None:
    """An @app.step keeps its name and retry policy when mapped."""
    from durably import RetryPolicy

    tries: dict[int, int] = {}

    @app.step(retry=RetryPolicy.fixed(3, 0))
    async def flaky(n: int) -> int:
        tries[n] = tries.get(n, 0) + 1
        if tries[n] < 2:
            raise ConnectionError("again")
        return n

    @app.workflow(name="declared")
    async def declared(ctx: Context) -> list[int]:
        return (await ctx.map(flaky, [1, 2])).values

    assert await app.run(declared, workflow_id="d") == [1, 2]
    assert tries == {1: 2, 2: 2}
    assert await kinds(app, "d") == [
        (0, "STEP", "flaky"),
        (1, "STEP", "flaky"),
        (2, "MAP", "flaky"),
    ]


async def test_child_handle_is_typed_by_the_workflow(app: Durably) -> None:
    """A handle names its child and decodes the result by the child's annotation."""

    @app.workflow(name="pair")
    async def pair(ctx: Context) -> tuple[int, str]:
        return (1, "one")

    @app.workflow(name="asks-pair")
    async def asks_pair(ctx: Context) -> str:
        handle: ChildHandle[tuple[int, str]] = await ctx.start_child(pair)
        value = await handle.result()
        return f"{handle!r} {value!r}"

    assert await app.run(asks_pair, workflow_id="t") == (
        "ChildHandle('t:0', workflow='pair') (1, 'one')"
    )


async def test_operator_timeline_shows_children_and_maps(app: Durably) -> None:
    """The operator documents and the dashboard's chart name the new operations and
    link each to its child."""
    from durably.admin.documents import detail_document
    from durably.admin.inspection import describe_workflow
    from durably.dashboard.gantt import build_gantt

    @app.workflow(name="unit")
    async def unit(ctx: Context, n: int) -> int:
        return n

    @app.workflow(name="shown")
    async def shown(ctx: Context) -> int:
        mapped = await ctx.map(unit, [1, 2])
        return await ctx.run_child(unit, 3) + sum(mapped.values)

    assert await app.run(shown, workflow_id="v") == 6
    detail = await describe_workflow(app.store, "v")
    document = detail_document(detail)
    rows = [(e["kind"], e["name"], e["child_workflow_id"]) for e in document["timeline"]]
    assert rows == [
        ("CHILD", "unit", "v:0"),
        ("CHILD_RESULT", "v:0", "v:0"),
        ("CHILD", "unit", "v:2"),
        ("CHILD_RESULT", "v:2", "v:2"),
        ("MAP", "unit", None),
        ("CHILD", "unit", "v:5"),
        ("CHILD_RESULT", "v:5", "v:5"),
    ]
    assert document["timeline"][4]["result"] == {
        "settled": [0, 1],
        "succeeded": 2,
        "failed": 0,
        "skipped": 0,
    }
    gantt = build_gantt(detail.workflow, detail.timeline, app._clock.now())
    assert [bar.kind for bar in gantt.bars] == [
        "child",
        "child-result",
        "child",
        "child-result",
        "map",
        "child",
        "child-result",
    ]


async def test_cancelling_a_parent_during_a_map_stops_it(
    app_factory: Callable[..., Durably],
) -> None:
    """A cancellation interrupts the map (it is not an item's failure): the parent ends
    CANCELLED, its running steps are stopped and its child items cancelled."""
    app = app_factory(inline_wait=0)
    stopped: list[int] = []
    started = asyncio.Event()

    async def block(n: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.append(n)
            raise

    @app.workflow(name="sleepy")
    async def sleepy(ctx: Context, n: int) -> object:
        return await ctx.wait_signal("never")

    @app.workflow(name="mapper")
    async def mapper(ctx: Context) -> None:
        await ctx.start_child(sleepy, 0)
        await ctx.map(block, [1, 2])

    async with app:
        await app.start(mapper, workflow_id="mp")
        await started.wait()
        await wait_for_status(app, "mp:0", WorkflowStatus.SUSPENDED)
        await app.cancel("mp")
        await wait_for_status(app, "mp", WorkflowStatus.CANCELLED)
        await wait_for_status(app, "mp:0", WorkflowStatus.CANCELLED)
    assert sorted(stopped) == [1, 2]


async def test_dry_run_replays_children_and_maps(app: Durably) -> None:
    """``durably replay`` (no app behind the context) replays the new operations,
    failed items included, to the recorded end."""
    from durably.admin.dry_run import replay_workflow

    @app.workflow(name="maybe")
    async def maybe(ctx: Context, n: int) -> int:
        if n == 2:
            raise ValueError("two")
        return n

    @app.workflow(name="dry")
    async def dry(ctx: Context) -> int:
        mapped = await ctx.map(maybe, [1, 2, 3])
        return sum(mapped.values) + await ctx.run_child(maybe, 4)

    assert await app.run(dry, workflow_id="dry") == 8
    report = await replay_workflow(app.store, app, "dry", now=app._clock.now())
    assert not report.diverged, report.message


# -- a real process killed mid-way ---------------------------------------------------------

PROGRAM = Path(__file__).with_name("children_crash_program.py")


def run_program(
    database: Path, log: Path, crash: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the crash program as a real process."""
    command = [sys.executable, str(PROGRAM), str(database), str(log)]
    if crash:
        command.append(crash)
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env={**os.environ}
    )


def recorded(database: Path) -> tuple[int, set[str]]:
    """How many child workflows exist, and the steps recorded as completed."""

    async def read() -> tuple[int, set[str]]:
        store = SqliteStore(database)
        await store.open()
        try:
            workflows = await store.list_workflows(limit=1000)
            steps = set()
            for record in workflows:
                history = await store.load_history(record.workflow_id)
                steps.update(
                    f"{record.workflow_id}/{operation.name}"
                    for operation in history.operations.values()
                    if operation.kind is OperationKind.STEP
                    and operation.status is OperationStatus.COMPLETED
                )
            return sum(1 for r in workflows if r.workflow_name == "part"), steps
        finally:
            await store.close()

    return asyncio.run(read()) if database.exists() else (0, set())


@pytest.mark.crash
def test_sigkill_mid_way_creates_each_child_once_and_completes_the_same(
    tmp_path: Path,
) -> None:
    """Kill the process at several write boundaries of a parent with children (a
    gather, a map): a new process completes it with the crash-free result, every child
    was created once, and no recorded step ran again."""
    baseline = run_program(tmp_path / "base.db", tmp_path / "base.log")
    assert baseline.returncode == 0, baseline.stderr
    expected = json.loads(baseline.stdout)
    boundaries = int(expected.pop("boundaries"))
    assert boundaries >= 20
    tried = 0
    for count in range(2, boundaries, 3):
        case = tmp_path / f"after-{count}"
        case.mkdir()
        database, log = case / "db.sqlite", case / "log.jsonl"
        crashed = run_program(database, log, f"after:{count}")
        if crashed.returncode == 0:  # this run took fewer writes (timing): no crash
            continue
        assert crashed.returncode == -9, crashed.stderr
        _, steps_before = recorded(database)
        effects_before = len(log.read_text().splitlines()) if log.exists() else 0
        recovered = run_program(database, log)
        assert recovered.returncode == 0, recovered.stderr
        outcome = json.loads(recovered.stdout)
        outcome.pop("boundaries")
        assert outcome == expected, count
        children, _ = recorded(database)
        assert children == 4, count
        again = [
            line
            for line in log.read_text().splitlines()[effects_before:]
            if json.loads(line)["step"] in steps_before
        ]
        assert again == [], f"after:{count}: recorded steps ran again: {again}"
        tried += 1
    assert tried >= 6

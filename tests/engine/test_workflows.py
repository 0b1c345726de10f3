"""Starting, running and querying workflows, on every store."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest

import durably
from durably import (
    Context,
    Durably,
    MemoryStore,
    WorkflowConflictError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowNotRegisteredError,
    WorkflowStatus,
)
from durably.models import WorkflowRecord
from durably.testing import FakeClock


class Tier(Enum):
    GOLD = "gold"
    SILVER = "silver"


@dataclass(frozen=True)
class Order:
    order_id: str
    total: Decimal
    tier: Tier
    placed_at: datetime


async def test_run_returns_the_workflow_result(app: Durably) -> None:
    """app.run starts a workflow and returns what its body returned."""

    async def double(n: int) -> int:
        return n * 2

    @app.workflow()
    async def doubler(ctx: Context, n: int) -> int:
        return await ctx.step("double", double, n)

    assert await app.run(doubler, 21) == 42
    info = (await app.list_workflows())[0]
    assert info.status is WorkflowStatus.COMPLETED
    assert info.result_json == "42"


def held_in_a_step(app: Durably) -> tuple[Callable[..., object], asyncio.Event]:
    """A workflow whose one step returns "released" once the event is set."""
    release = asyncio.Event()

    async def wait_for_release() -> str:
        await release.wait()
        return "released"

    @app.workflow()
    async def held(ctx: Context) -> str:
        return await ctx.step("wait", wait_for_release)

    return held, release


async def test_start_returns_a_handle_before_the_workflow_finishes(app: Durably) -> None:
    """start gives the id at once, while the body is still blocked in a step."""
    blocked, release = held_in_a_step(app)
    handle = await app.start(blocked, workflow_id="blocked-1")  # type: ignore[arg-type]
    assert handle.workflow_id == "blocked-1"
    assert await handle.status() is WorkflowStatus.RUNNING
    release.set()
    assert await handle.result() == "released"
    assert await handle.status() is WorkflowStatus.COMPLETED


async def test_a_result_that_ends_in_this_process_is_handed_to_its_waiter(
    app: Durably, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter for a workflow this process is running never reads the store: the run
    that commits its end hands the final record over."""
    held, release = held_in_a_step(app)
    handle = await app.start(held)  # type: ignore[arg-type]
    reads: list[str] = []
    read = app.store.get_workflow

    async def counted(workflow_id: str) -> WorkflowRecord | None:
        reads.append(workflow_id)
        return await read(workflow_id)

    monkeypatch.setattr(app.store, "get_workflow", counted)
    waiting = asyncio.ensure_future(handle.result())
    await asyncio.sleep(0)  # the waiter's first turn: it finds the run and waits
    release.set()
    assert await waiting == "released"
    assert reads == []


async def test_plain_def_workflow_and_steps_run_in_threads(app: Durably) -> None:
    """A def workflow gets a blocking context; def steps run in a worker thread."""

    def add(a: int, b: int) -> int:
        return a + b

    @app.workflow()
    def adder(ctx: durably.SyncContext, a: int, b: int) -> int:
        first = ctx.step("add", add, a, b)
        return ctx.step("add-again", add, first, b)

    assert await app.run(adder, 1, 2) == 5


async def test_def_step_inside_async_workflow_via_ctx_step(app: Durably) -> None:
    """ctx.step runs a plain def function in a thread from an async workflow."""

    def shout(text: str) -> str:
        return text.upper()

    @app.workflow()
    async def shouter(ctx: Context, text: str) -> str:
        return await ctx.step("shout", shout, text)

    assert await app.run(shouter, "hi") == "HI"


async def test_steps_of_every_callable_shape_run_on_the_loop_or_in_a_thread(app: Durably) -> None:
    """Each kind of step function is told apart the same way ``inspect`` does (async
    ones are awaited on the loop, the rest run in a thread), and an awaitable returned
    by a plain function is awaited, while a result that merely looks like data is not."""
    loop_thread = threading.get_ident()
    ran_in: dict[str, bool] = {}

    async def async_fn(label: str) -> str:
        ran_in[label] = threading.get_ident() == loop_thread
        return label

    def def_fn(label: str) -> str:
        ran_in[label] = threading.get_ident() == loop_thread
        return label

    class AsyncCallable:
        async def __call__(self, label: str) -> str:
            return await async_fn(label)

        async def method(self, label: str) -> str:
            return await async_fn(label)

    def returns_a_coroutine(label: str) -> Any:
        return async_fn(label)

    def returns_a_decimal() -> Decimal:
        return Decimal("1.5")

    @app.workflow()
    async def shapes(ctx: Context) -> list[str]:
        return [
            await ctx.step("async", async_fn, "async"),
            await ctx.step("def", def_fn, "def"),
            await ctx.step("partial", functools.partial(async_fn, "partial")),
            await ctx.step("method", AsyncCallable().method, "method"),
            await ctx.step("callable", AsyncCallable(), "callable"),
            await ctx.step("lambda", lambda: async_fn("lambda")),
            await ctx.step("coroutine", returns_a_coroutine, "coroutine"),
            repr(await ctx.step("decimal", returns_a_decimal)),
        ]

    labels = ["async", "def", "partial", "method", "callable", "lambda", "coroutine"]
    assert await app.run(shapes) == [*labels, "Decimal('1.5')"]
    on_loop = {"async": True, "def": False, "partial": True, "method": True, "callable": True}
    # A def returning a coroutine runs in a thread; the coroutine runs on the loop.
    assert ran_in == {**on_loop, "lambda": True, "coroutine": True}


async def test_decorated_steps_are_recorded_with_their_names(
    app: Durably, store_factory: Callable[[], durably.Store]
) -> None:
    """@app.step functions called in a workflow become recorded steps."""

    @app.step()
    async def reserve(item: str) -> int:
        return len(item)

    @app.step(name="charge-card")
    async def charge(amount: int) -> str:
        return f"paid {amount}"

    @app.workflow()
    async def checkout(ctx: Context, item: str) -> str:
        count = await reserve(item)
        return await charge(count)

    handle = await app.start(checkout, "book")
    assert await handle.result() == "paid 4"
    history = await app.store.load_history(handle.workflow_id)
    assert [op.name for _, op in sorted(history.operations.items())] == [
        "reserve",
        "charge-card",
    ]


async def test_a_decorated_step_called_inside_a_step_function_is_a_plain_call(
    app: Durably, store_factory: Callable[[], durably.Store]
) -> None:
    """A step's function runs in its workflow body's task, but not as the body: an
    @app.step function it calls runs as a plain call (not a nested recorded step), and
    the body's next @app.step call is a recorded step again."""

    @app.step()
    async def price(item: str) -> int:
        return len(item)

    async def quote(item: str) -> int:
        return await price(item) * 10  # inside a step function: a plain call

    @app.workflow()
    async def order(ctx: Context, item: str) -> int:
        quoted = await ctx.step("quote", quote, item)
        return quoted + await price(item)  # in the body again: recorded

    handle = await app.start(order, "book")
    assert await handle.result() == 44
    history = await app.store.load_history(handle.workflow_id)
    assert [op.name for _, op in sorted(history.operations.items())] == ["quote", "price"]


async def test_a_decorated_plain_def_step_called_from_an_async_workflow_fails_it(
    app: Durably,
) -> None:
    """An async workflow cannot block on a plain def step called directly: the call
    raises a TypeError that says how to call it, and the workflow fails with it."""

    @app.step()
    def weigh(item: str) -> int:
        return len(item)

    @app.workflow()
    async def ship(ctx: Context, item: str) -> int:
        return await weigh(item)  # type: ignore[no-any-return, misc]

    handle = await app.start(ship, "crate")
    with pytest.raises(WorkflowFailedError) as failed:
        await handle.result()
    assert failed.value.status == WorkflowStatus.FAILED
    assert failed.value.error_type == "TypeError"
    assert "await ctx.step('weigh', weigh, ...)" in (failed.value.error_message or "")
    history = await app.store.load_history(handle.workflow_id)
    assert history.operations == {}  # nothing ran as a step


async def test_decorated_step_runs_plainly_outside_a_workflow(app: Durably) -> None:
    """Calling a step function outside a workflow just calls it."""

    @app.step()
    async def ping() -> str:
        return "pong"

    assert await ping() == "pong"


async def test_starting_the_same_id_twice_returns_the_existing_workflow(app: Durably) -> None:
    """An idempotent start runs the body once."""
    runs: list[int] = []

    async def count() -> int:
        runs.append(1)
        return len(runs)

    @app.workflow()
    async def once(ctx: Context, n: int) -> int:
        return await ctx.step("count", count)

    first = await app.start(once, 1, workflow_id="order-7")
    assert await first.result() == 1
    second = await app.start(once, 1, workflow_id="order-7")
    assert await second.result() == 1
    assert runs == [1]


async def test_same_id_with_different_input_is_a_conflict(app: Durably) -> None:
    """Reusing an id with other input raises WorkflowConflictError and changes nothing."""

    @app.workflow()
    async def echo(ctx: Context, n: int) -> int:
        return n

    await app.run(echo, 1, workflow_id="dup")
    with pytest.raises(WorkflowConflictError, match="dup"):
        await app.start(echo, 2, workflow_id="dup")
    assert await app.handle("dup").result() == 1


async def test_same_id_with_another_workflow_is_a_conflict(app: Durably) -> None:
    """Reusing an id for another workflow (same input) raises WorkflowConflictError
    naming both, and changes nothing."""

    @app.workflow()
    async def first(ctx: Context, n: int) -> int:
        return n

    @app.workflow()
    async def second(ctx: Context, n: int) -> int:
        return -n

    await app.run(first, 1, workflow_id="taken")
    with pytest.raises(WorkflowConflictError, match="taken"):
        await app.start(second, 1, workflow_id="taken")
    info = await app.get_workflow("taken")
    assert info.workflow_name.endswith(".first")
    assert await app.handle("taken").result() == 1


async def test_a_step_costs_one_store_write_and_no_read() -> None:
    """The hot path: one write per step, none of them preceded by a read; a new
    workflow's history is never loaded."""
    store = MemoryStore()
    calls: dict[str, int] = {}
    for name in [
        "create_workflow",
        "get_workflow",
        "load_history",
        "list_operations",
        "record_operation",
        "record_attempt",
        "set_workflow_status",
        "suspend_workflow",
    ]:
        method = getattr(store, name)

        async def counted(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return await _method(*args, **kw)

        setattr(store, name, counted)
    app = Durably(store, clock=FakeClock())

    async def add(value: int) -> int:
        return value + 1

    @app.workflow()
    async def ten_steps(ctx: Context) -> int:
        value = 0
        for index in range(10):
            value = await ctx.step(f"step-{index}", add, value)
        return value

    async with app:
        handle = await app.start(ten_steps, workflow_id="counted")
        calls.clear()  # what starting costs is not the steps' business
        assert await handle.result() == 10
    assert calls == {"record_operation": 10, "set_workflow_status": 1}


async def test_unregistered_workflow_is_refused(app: Durably) -> None:
    """Starting a function that is not a registered workflow explains what to do."""

    async def stray(ctx: Context) -> None:
        return None

    with pytest.raises(WorkflowNotRegisteredError, match=r"@app.workflow\(\)"):
        await app.start(stray)


async def test_invalid_workflow_id_is_refused(app: Durably) -> None:
    """Ids with surrounding whitespace are refused with a ValueError before any write."""

    @app.workflow()
    async def noop(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="workflow_id"):
        await app.start(noop, workflow_id=" padded ")
    assert await app.list_workflows() == []


async def test_typed_input_and_result_keep_their_types(app: Durably) -> None:
    """Dataclasses, enums, Decimals and datetimes round-trip through input and result."""
    order = Order(
        order_id="o-1",
        total=Decimal("19.99"),
        tier=Tier.GOLD,
        placed_at=datetime(2026, 1, 2, 3, 4, 5),
    )

    async def upgrade(item: Order) -> Order:
        return Order(
            order_id=item.order_id, total=item.total * 2, tier=Tier.SILVER, placed_at=item.placed_at
        )

    @app.workflow()
    async def process(ctx: Context, item: Order) -> Order:
        assert isinstance(item, Order)
        return await ctx.step("upgrade", upgrade, item)

    result = await app.run(process, order)
    assert result == Order(
        order_id="o-1", total=Decimal("39.98"), tier=Tier.SILVER, placed_at=order.placed_at
    )


async def test_failed_workflow_raises_with_the_recorded_error(app: Durably) -> None:
    """A failing body ends FAILED; result() raises WorkflowFailedError with the cause."""

    async def explode() -> None:
        raise KeyError("missing")

    @app.workflow()
    async def broken(ctx: Context) -> None:
        await ctx.step("explode", explode)

    handle = await app.start(broken)
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result()
    assert caught.value.status == WorkflowStatus.FAILED
    assert caught.value.error_type == "KeyError"
    assert isinstance(caught.value.__cause__, KeyError)
    info = await handle.info()
    assert info.status is WorkflowStatus.FAILED
    assert info.error is not None
    assert "explode" in (info.error.traceback or "")


async def test_get_unknown_workflow_raises(app: Durably) -> None:
    """Reading an unknown id raises WorkflowNotFoundError."""
    with pytest.raises(WorkflowNotFoundError):
        await app.get_workflow("nope")


async def test_list_workflows_filters_by_status_and_name(app: Durably) -> None:
    """list_workflows filters by status and by workflow name."""

    @app.workflow()
    async def good(ctx: Context) -> int:
        return 1

    @app.workflow()
    async def bad(ctx: Context) -> int:
        raise ValueError("no")

    await app.run(good)
    with pytest.raises(WorkflowFailedError):
        await app.run(bad)
    completed = await app.list_workflows(status=WorkflowStatus.COMPLETED)
    assert [info.workflow_name for info in completed] == [good.__qualname__]
    failed = await app.list_workflows(name=bad.__qualname__)
    assert [info.status for info in failed] == [WorkflowStatus.FAILED]


async def test_watch_yields_changes_until_the_workflow_ends(app: Durably) -> None:
    """watch yields the current state, each change, and stops at a terminal status."""
    gate = asyncio.Event()

    async def wait_gate() -> int:
        await gate.wait()
        return 1

    @app.workflow()
    async def gated(ctx: Context) -> int:
        return await ctx.step("gate", wait_gate)

    handle = await app.start(gated)
    seen: list[WorkflowStatus] = []
    async for info in app.watch(handle.workflow_id):
        seen.append(info.status)
        if len(seen) == 1:
            gate.set()
    assert seen[0] is WorkflowStatus.RUNNING
    assert seen[-1] is WorkflowStatus.COMPLETED


async def test_watch_of_unknown_id_yields_nothing(app: Durably) -> None:
    """watch on an unknown id ends at once."""
    assert [info async for info in app.watch("ghost")] == []


async def test_current_step_gives_a_stable_idempotency_key(app: Durably) -> None:
    """Inside a step, current_step() names the workflow and step position."""

    async def key() -> str:
        return durably.current_step().idempotency_key

    @app.workflow()
    async def keyed(ctx: Context) -> list[str]:
        return [await ctx.step("a", key), await ctx.step("b", key)]

    assert await app.run(keyed, workflow_id="wf-k") == ["wf-k:0", "wf-k:1"]


async def test_concurrent_steps_are_numbered_in_call_order(
    app: Durably, store_factory: Callable[[], durably.Store]
) -> None:
    """asyncio.gather over steps records them at sequence numbers in call order."""
    second_done = asyncio.Event()

    async def slow() -> str:
        await second_done.wait()
        return "slow"

    async def fast() -> str:
        second_done.set()
        return "fast"

    @app.workflow()
    async def fan_out(ctx: Context) -> list[str]:
        return list(await asyncio.gather(ctx.step("slow", slow), ctx.step("fast", fast)))

    handle = await app.start(fan_out)
    assert await handle.result() == ["slow", "fast"]
    history = await app.store.load_history(handle.workflow_id)
    assert history.operations[0].name == "slow"
    assert history.operations[1].name == "fast"


async def test_app_methods_refuse_when_closed(app_factory: Callable[..., Durably]) -> None:
    """Using an app that is not open raises AppClosedError with what to do."""
    closed = app_factory()
    with pytest.raises(durably.AppClosedError, match="async with"):
        await closed.get_workflow("x")


async def test_closing_twice_is_harmless_and_a_closed_app_refuses_calls(
    app_factory: Callable[..., Durably],
) -> None:
    """Closing is idempotent (the seed's dispose); an app that was open and closed
    refuses every call with AppClosedError, and the store keeps what it recorded."""
    app = app_factory()

    @app.workflow()
    async def one(ctx: Context) -> int:
        return 1

    async with app:
        assert await app.run(one, workflow_id="before-close") == 1
    await app.close()
    await app.close()
    with pytest.raises(durably.AppClosedError):
        await app.start(one)
    with pytest.raises(durably.AppClosedError):
        await app.get_workflow("before-close")
    reopened = app_factory()
    async with reopened:
        assert (await reopened.get_workflow("before-close")).status is WorkflowStatus.COMPLETED


async def test_id_generator_names_workflows_started_without_an_id(
    app_factory: Callable[..., Durably],
) -> None:
    """Durably(id_generator=...) makes the ids of starts that give none."""
    counter = iter(range(100))
    app = app_factory(id_generator=lambda: f"job-{next(counter)}")

    @app.workflow()
    async def job(ctx: Context) -> int:
        return 1

    async with app:
        first = await app.start(job)
        second = await app.start(job)
    assert (first.workflow_id, second.workflow_id) == ("job-0", "job-1")

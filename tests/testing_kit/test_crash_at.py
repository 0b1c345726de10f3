"""crash_at: the process dies at a step; a new process recovers through the claim path."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from durably import Context, WorkflowStatus
from durably.models import OperationStatus
from durably.testing import TestDurably, crash_at

LEASE = timedelta(seconds=30)  # Durably's default lease


class Shop:
    """Side effects of a checkout, counted."""

    def __init__(self) -> None:
        self.charges: list[str] = []
        self.shipments: list[str] = []

    async def charge(self, order: str) -> str:
        self.charges.append(order)
        return f"payment-{order}"

    async def ship(self, order: str) -> str:
        self.shipments.append(order)
        return f"parcel-{order}"


def register_checkout(app: TestDurably, shop: Shop) -> object:
    @app.workflow(name="checkout")
    async def checkout(ctx: Context, order: str) -> str:
        payment = await ctx.step("charge", shop.charge, order)
        parcel = await ctx.step("ship", shop.ship, order)
        return f"{payment} {parcel}"

    return checkout


@pytest.mark.parametrize(
    ("when", "charges"),
    [("before", 1), ("before_record", 2), ("after", 1)],
)
async def test_recovery_runs_each_step_the_expected_number_of_times(
    when: str, charges: int
) -> None:
    """Before: charged once (by the recovery). Before its record: charged twice (the
    at-least-once window). After: charged once, the recovery replays the result."""
    shop = Shop()
    async with TestDurably() as app:
        checkout = register_checkout(app, shop)
        async with crash_at(app, "charge", when=when) as crash:  # type: ignore[arg-type]
            result = await app.run(checkout, "o-1")  # type: ignore[call-overload]
        info = await app.get_workflow(crash.crashed_workflow_id or "")
    assert result == "payment-o-1 parcel-o-1"
    assert shop.charges == ["o-1"] * charges
    assert shop.shipments == ["o-1"]
    assert crash.crashed
    assert info.status is WorkflowStatus.COMPLETED
    assert info.recovery_attempts == 1


async def test_the_dead_process_writes_nothing_more_and_keeps_its_lease() -> None:
    """Right after the crash the workflow is still RUNNING under the dead executor, with
    only what was recorded before the crash; the new process takes it over only when
    the lease has expired."""
    shop = Shop()
    async with TestDurably() as app:
        checkout = register_checkout(app, shop)
        async with crash_at(app, "ship", when="before_record") as crash:
            handle = await app.start(checkout, "o-2")  # type: ignore[call-overload]
            await crash.wait()
        assert (crash.dead_executor_id, app.executor_id) == ("test-process", "test-process-2")
        stranded = await app.get_workflow(handle.workflow_id)
        history = await app.store.load_history(handle.workflow_id)
        assert stranded.status is WorkflowStatus.RUNNING
        assert stranded.owner == "test-process"
        assert [(op.name, op.status) for op in history.operations.values()] == [
            ("charge", OperationStatus.COMPLETED)
        ]
        assert shop.shipments == ["o-2"]  # it ran, its result was lost
        started = app.clock.now()
        assert await handle.result() == "payment-o-2 parcel-o-2"
        assert app.clock.now() - started >= LEASE // timedelta(microseconds=1)
        recovered = await app.get_workflow(handle.workflow_id)
    assert shop.charges == ["o-2"]
    assert shop.shipments == ["o-2", "o-2"]
    assert recovered.recovery_attempts == 1


async def test_a_crash_stops_every_workflow_of_the_process() -> None:
    """A workflow in the middle of a step in the crashed process is recovered too; its
    interrupted step runs again."""
    shop = Shop()
    holds: list[int] = []
    holding = asyncio.Event()
    gate = asyncio.Event()
    async with TestDurably() as app:
        checkout = register_checkout(app, shop)

        async def hold() -> str:
            holds.append(1)
            holding.set()
            await gate.wait()
            return "held"

        @app.workflow(name="holder")
        async def holder(ctx: Context) -> str:
            return await ctx.step("hold", hold)

        waiting = await app.start(holder)
        await holding.wait()
        async with crash_at(app, "charge", when="before") as crash:
            crashed = await app.start(checkout, "o-3")  # type: ignore[call-overload]
            await crash.wait()
            gate.set()  # too late for the dead process's run of hold()
            assert await crashed.result() == "payment-o-3 parcel-o-3"
        assert await waiting.result() == "held"
        info = await waiting.info()
    assert holds == [1, 1]
    assert info.recovery_attempts == 1


async def test_a_crash_after_a_long_sleep_hits_the_resumed_run() -> None:
    """The crash point may be reached by a run that resumed from a durable sleep."""
    shop = Shop()
    async with TestDurably() as app:

        @app.workflow(name="renewal")
        async def renewal(ctx: Context, order: str) -> str:
            await ctx.sleep("grace", timedelta(days=14))
            return await ctx.step("charge", shop.charge, order)

        async with crash_at(app, "charge", when="after") as crash:
            assert await app.run(renewal, "o-4") == "payment-o-4"
    assert crash.crashed
    assert shop.charges == ["o-4"]


async def test_only_the_chosen_workflow_triggers_the_crash() -> None:
    """workflow_id restricts the crash to one workflow."""
    shop = Shop()
    async with TestDurably() as app:
        checkout = register_checkout(app, shop)
        async with crash_at(app, "charge", when="before_record", workflow_id="b") as crash:
            first = await app.run(checkout, "a", workflow_id="a")  # type: ignore[call-overload]
            second = await app.run(checkout, "b", workflow_id="b")  # type: ignore[call-overload]
    assert (first, second) == ("payment-a parcel-a", "payment-b parcel-b")
    assert crash.crashed_workflow_id == "b"
    assert shop.charges == ["a", "b", "b"]


async def test_a_block_that_never_reaches_the_step_fails() -> None:
    """A crash test whose crash never happened fails loudly instead of passing."""
    shop = Shop()
    async with TestDurably() as app:
        checkout = register_checkout(app, shop)
        with pytest.raises(AssertionError, match="'refund' live"):
            async with crash_at(app, "refund"):
                await app.run(checkout, "o-5")  # type: ignore[call-overload]


async def test_bad_crash_points_are_refused() -> None:
    """An unknown moment is a clear error; an async app's crash point needs async with."""
    async with TestDurably() as app:
        with pytest.raises(ValueError, match="when must be one of"):
            crash_at(app, "charge", when="during")  # type: ignore[arg-type]
        with (
            pytest.raises(TypeError, match="async with"),
            crash_at(app, "charge"),
        ):
            pass  # pragma: no cover

"""Leases and fencing: a paused executor that lost its lease cannot write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from durably import Context, Durably, Store, WorkflowStatus
from durably.testing import FakeClock


async def test_a_zombie_executor_cannot_write_over_its_successor(
    store_factory: Callable[[], Store],
) -> None:
    """Executor A stalls (its clock stops: no heartbeat); B claims the expired lease
    and finishes; A's late step result is refused and nothing of A's is recorded."""
    clock_a, clock_b = FakeClock(), FakeClock()
    a_gate, a_entered = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    def register(app: Durably, who: str) -> None:
        async def charge() -> str:
            ran.append(who)
            if who == "a":
                a_entered.set()
                await a_gate.wait()
            return f"charged by {who}"

        @app.workflow(name="pay")
        async def pay(ctx: Context) -> str:
            return await ctx.step("charge", charge)

    lease = timedelta(seconds=30)
    zombie = Durably(store_factory(), clock=clock_a, lease_duration=lease, executor_id="a")
    successor = Durably(store_factory(), clock=clock_b, lease_duration=lease, executor_id="b")
    register(zombie, "a")
    register(successor, "b")
    async with zombie, successor:
        await zombie.start("pay", workflow_id="p-1")
        await a_entered.wait()
        clock_b.advance(lease + timedelta(seconds=1))
        result = await successor.handle("p-1").result()
        assert result == "charged by b"
        zombie_run = zombie._runs["p-1"][1]
        a_gate.set()
        # The zombie's run ends when its refused write comes back (a real round trip
        # on PostgreSQL); the bound only guards against a hang.
        await asyncio.wait({zombie_run}, timeout=60)
        assert zombie_run.done()
        assert "p-1" not in zombie._runs
        history = await successor.store.load_history("p-1")
        record = await successor.store.get_workflow("p-1")
    assert ran == ["a", "b"]
    assert history.operations[0].result == '"charged by b"'
    assert record is not None
    assert record.status is WorkflowStatus.COMPLETED
    assert record.recovery_attempts == 1

"""A store failure in the middle of a run does not strand the workflow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from durably import Context, Durably, Store, StoreError
from durably.testing import FakeClock, FaultInjectingStore


async def test_a_failed_checkpoint_write_is_retried_by_running_the_workflow_again(
    store_factory: Callable[[], Store], clock: FakeClock
) -> None:
    """The run stops on the error (nothing half-written), then runs again by replay."""
    failures = {"left": 1}

    def fail_once(phase: str, method: str) -> None:
        if phase == "before" and method == "record_operation" and failures["left"]:
            failures["left"] -= 1
            raise StoreError("disk I/O error (injected)")

    store = FaultInjectingStore(store_factory(), fail_once)
    app = Durably(store, clock=clock, poll_interval=timedelta(seconds=1))  # type: ignore[arg-type]
    calls: list[int] = []

    async def work() -> int:
        calls.append(1)
        return len(calls)

    @app.workflow()
    async def fragile(ctx: Context) -> int:
        return await ctx.step("work", work)

    async with app:
        handle = await app.start(fragile)
        await clock.wait_for_sleepers(3)  # the claim loop, the heartbeat, the retry pause
        clock.advance(timedelta(seconds=1))
        assert await handle.result() == 2
    assert failures["left"] == 0
    assert len(calls) == 2

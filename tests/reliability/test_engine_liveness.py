"""A workflow owned by a live executor must be running in it: the two ways found to
strand one (RUNNING, owned by this process, its lease renewed by every heartbeat, and
no run anywhere), each reproduced deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durably import Context, Durably, SqliteStore, Store, StoreError, WorkflowStatus
from durably.models import Fence, WorkflowRecord
from durably.testing import FakeClock, FaultInjectingStore

LEASE = timedelta(seconds=30)


async def advance_until_finished(
    app: Durably, clock: FakeClock, workflow_id: str
) -> WorkflowStatus:
    """Move the virtual clock on, five leases' worth in one-second ticks, letting the
    app work at each tick; return the status reached (finished or not)."""
    status = (await app.handle(workflow_id).info()).status
    for _ in range(int(LEASE.total_seconds()) * 5):
        if status.is_terminal:
            break
        for _ in range(50):
            await asyncio.sleep(0)
        clock.advance(timedelta(seconds=1))
        status = (await app.handle(workflow_id).info()).status
    return status


class ClaimWhileTheRunEnds:
    """A store whose ``suspend_workflow``, once it has committed, lets the app claim
    due work before returning to the run that suspended: the interleaving in which the
    claim loop's answer arrives before the ending run has left the app's table of runs
    (it happens on its own under load; see the SIGKILL sweep's orphaned-run count).

    The awaited signal arrives just before the suspension, so the suspended workflow
    is due at once.
    """

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.app: Durably | None = None
        self.claimed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def suspend_workflow(self, fence: Fence, **options: Any) -> WorkflowRecord:
        await self.inner.append_signal(
            fence.workflow_id, "go", '"now"', serializer="json", dedup_key=None, now=options["now"]
        )
        record = await self.inner.suspend_workflow(fence, **options)
        assert self.app is not None
        self.claimed.extend((await self.app.recover()).resumed)
        return record


async def test_a_workflow_claimed_while_its_previous_run_ends_still_runs(tmp_path: Path) -> None:
    """The claim made between a suspension and the end of its run is not lost."""
    clock = FakeClock()
    store = ClaimWhileTheRunEnds(SqliteStore(tmp_path / "durably.db"))
    app = Durably(store, clock=clock, inline_wait=0, lease_duration=LEASE)  # type: ignore[arg-type]
    store.app = app

    @app.workflow(name="waits")
    async def waits(ctx: Context) -> object:
        return await ctx.wait_signal("go")

    async with app:
        await app.start(waits, workflow_id="w-1")
        status = await advance_until_finished(app, clock, "w-1")
        record = await app.store.get_workflow("w-1")
    assert store.claimed == ["w-1"]  # the interleaving happened
    assert record is not None
    assert status is WorkflowStatus.COMPLETED, (
        f"stranded: {record.status}, owner {record.owner} (this executor), fence {record.fence}"
    )


async def test_retrying_a_start_whose_first_attempt_failed_after_commit_runs_it(
    tmp_path: Path,
) -> None:
    """start() fails after its insert committed; the retried start() runs the workflow."""
    failures = {"left": 1}

    def lose_the_answer(phase: str, method: str) -> None:
        if phase == "after" and method == "create_workflow" and failures["left"]:
            failures["left"] -= 1
            raise StoreError("connection lost after the commit (injected)")

    clock = FakeClock()
    store = FaultInjectingStore(SqliteStore(tmp_path / "durably.db"), lose_the_answer)
    app = Durably(store, clock=clock, lease_duration=LEASE)  # type: ignore[arg-type]

    @app.workflow(name="quick")
    async def quick(ctx: Context) -> str:
        return await ctx.step("work", lambda: "done")

    async with app:
        with pytest.raises(StoreError):
            await app.start(quick, workflow_id="q-1")
        await app.start(quick, workflow_id="q-1")  # the caller retries, as advised
        status = await advance_until_finished(app, clock, "q-1")
        record = await app.store.get_workflow("q-1")
    assert record is not None
    assert status is WorkflowStatus.COMPLETED, (
        f"stranded: {record.status}, owner {record.owner} (this executor)"
    )


@pytest.mark.parametrize("queued", [False, True], ids=["start", "enqueue"])
async def test_a_retried_start_runs_the_workflow_once_on_every_store(
    store_factory: Callable[[], Store], queued: bool
) -> None:
    """The same on every store, and for enqueue: the retried call returns the same
    workflow, which then runs to its end, its step once."""
    failures = {"left": 1}
    runs: list[str] = []

    def lose_the_answer(phase: str, method: str) -> None:
        if phase == "after" and method == "create_workflow" and failures["left"]:
            failures["left"] -= 1
            raise StoreError("connection lost after the commit (injected)")

    clock = FakeClock()
    store = FaultInjectingStore(store_factory(), lose_the_answer)
    app = Durably(store, clock=clock, lease_duration=LEASE)  # type: ignore[arg-type]
    app.queue("work")

    def work() -> str:
        runs.append("work")
        return "done"

    @app.workflow(name="quick")
    async def quick(ctx: Context) -> str:
        return await ctx.step("work", work)

    async def begin() -> object:
        if queued:
            return await app.enqueue(quick, workflow_id="q-1", queue="work")
        return await app.start(quick, workflow_id="q-1")

    async with app:
        with pytest.raises(StoreError):
            await begin()
        await begin()
        status = await advance_until_finished(app, clock, "q-1")
        assert status is WorkflowStatus.COMPLETED
        assert await app.handle("q-1").result() == "done"
    assert runs == ["work"]

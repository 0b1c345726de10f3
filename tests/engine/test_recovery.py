"""Replay and recovery inside one test process: an app stops mid-run, another resumes.

(Real processes killed with SIGKILL are in tests/acceptance.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from durably import Context, Durably, MemoryStore, Observer, WorkflowHandle, WorkflowStatus
from durably.models import WorkflowRecord
from durably.testing import FakeClock


def counting_workflow(app: Durably, runs: list[str], gate: asyncio.Event) -> object:
    """A three-step workflow whose second step blocks until ``gate`` is set."""

    async def first() -> str:
        runs.append("first")
        return "a"

    async def second() -> str:
        runs.append("second")
        await gate.wait()
        return "b"

    async def third() -> str:
        runs.append("third")
        return "c"

    @app.workflow(name="three-steps")
    async def three_steps(ctx: Context) -> str:
        return (
            await ctx.step("first", first)
            + await ctx.step("second", second)
            + await ctx.step("third", third)
        )

    return three_steps


async def wait_for(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded, no wall-clock sleeps)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_a_new_app_resumes_after_the_last_recorded_step(
    app_factory: Callable[..., Durably],
) -> None:
    """Recorded steps are replayed, not re-run; the interrupted step runs again."""
    runs: list[str] = []
    gate = asyncio.Event()
    first_app = app_factory()
    workflow = counting_workflow(first_app, runs, gate)
    async with first_app:
        await first_app.start(workflow, workflow_id="resume-me")  # type: ignore[arg-type]
        await wait_for(lambda: runs == ["first", "second"])
    assert runs == ["first", "second"]

    gate.set()
    second_app = app_factory()
    counting_workflow(second_app, runs, gate)
    async with second_app:
        result = await second_app.handle("resume-me").result()
    assert result == "abc"
    assert runs == ["first", "second", "second", "third"]


async def test_closing_an_app_leaves_its_workflows_recoverable(
    app_factory: Callable[..., Durably],
) -> None:
    """Closing (the seed's dispose) neither fails nor compensates a waiting workflow."""
    undone: list[str] = []

    async def book() -> str:
        return "booked"

    async def unbook(result: str) -> None:
        undone.append(result)

    first_app = app_factory(inline_wait=timedelta(hours=1))

    @first_app.workflow(name="waits", version="1")
    async def waits(ctx: Context) -> str | None:
        await ctx.step("book", book, compensate=unbook)
        return await ctx.wait_signal("go")

    async with first_app:
        await first_app.start(waits, workflow_id="w-1")
        for _ in range(1000):
            if await _has_ops(first_app, "w-1"):
                break
            await asyncio.sleep(0)
    second_app = app_factory()

    @second_app.workflow(name="waits", version="1")
    async def waits_again(ctx: Context) -> str | None:
        await ctx.step("book", book, compensate=unbook)
        return await ctx.wait_signal("go")

    async with second_app:
        info = await second_app.get_workflow("w-1")
        assert info.status in {WorkflowStatus.RUNNING, WorkflowStatus.SUSPENDED}
        await second_app.send_signal("w-1", "go", "now")
        assert await second_app.handle("w-1").result() == "now"
    assert undone == []


class RecoveryRecorder(Observer):
    """Records the recovery hooks by workflow id."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.completed: dict[str, bool] = {}

    def on_recovery_start(self, workflow_id: str) -> None:
        self.started.append(workflow_id)

    def on_recovery_complete(self, workflow_id: str, succeeded: bool) -> None:
        self.completed[workflow_id] = succeeded


def recovered_workflow(app: Durably, hold: Callable[[], Any]) -> object:
    """A workflow whose first step is ``hold``, then completes, suspends or fails."""

    @app.workflow(name="recovered", version="1")
    async def recovered(ctx: Context, ending: str) -> str:
        await ctx.step("hold", hold)
        if ending == "suspend":
            await ctx.sleep("nap", timedelta(hours=1))
        if ending == "fail":
            raise ValueError("failed after recovery")
        return ending

    return recovered


async def test_recovery_hooks_report_each_recovered_run_and_its_outcome(
    app_factory: Callable[..., Durably],
) -> None:
    """Each workflow a new app takes over is reported when its recovery starts and when
    that run ends: succeeded when it completed or went back to a durable wait, not when
    it failed."""
    held = asyncio.Event()

    async def blocking() -> None:
        held.set()
        await asyncio.Event().wait()

    first_app = app_factory()
    workflow = recovered_workflow(first_app, blocking)
    endings = ("complete", "suspend", "fail")
    async with first_app:
        for ending in endings:
            held.clear()
            await first_app.start(workflow, ending, workflow_id=f"r-{ending}")  # type: ignore[arg-type]
            await held.wait()

    observer = RecoveryRecorder()
    second_app = app_factory(observers=[observer], inline_wait=timedelta(0))
    recovered_workflow(second_app, lambda: None)
    async with second_app:
        for ending in endings:
            status = WorkflowStatus.SUSPENDED if ending == "suspend" else None
            for _ in range(10_000):
                if ending in {i.removeprefix("r-") for i in observer.completed}:
                    break
                await asyncio.sleep(0)
            if status is not None:
                assert await second_app.handle(f"r-{ending}").status() is status
    assert sorted(observer.started) == ["r-complete", "r-fail", "r-suspend"]
    assert observer.completed == {"r-complete": True, "r-suspend": True, "r-fail": False}


async def _has_ops(app: Durably, workflow_id: str) -> bool:
    history = await app.store.load_history(workflow_id)
    return bool(history.operations)


async def test_recovery_does_not_wait_for_a_blocked_workflow(
    app_factory: Callable[..., Durably],
) -> None:
    """A workflow waiting for a signal does not hold up the recovery of the others."""
    first_app = app_factory(inline_wait=timedelta(hours=1))
    blockers: list[asyncio.Event] = []

    def register(app: Durably) -> tuple[object, object]:
        async def hold() -> int:
            event = asyncio.Event()
            blockers.append(event)
            await event.wait()
            return 1

        @app.workflow(name="waiter")
        async def waiter(ctx: Context) -> object:
            return await ctx.wait_signal("never")

        @app.workflow(name="worker")
        async def worker(ctx: Context) -> int:
            return await ctx.step("hold", hold)

        return waiter, worker

    waiter, worker = register(first_app)
    async with first_app:
        await first_app.start(waiter, workflow_id="waiter")  # type: ignore[arg-type]
        for index in range(3):
            await first_app.start(worker, workflow_id=f"worker-{index}")  # type: ignore[arg-type]
        await wait_for(lambda: len(blockers) == 3)
    blockers.clear()
    second_app = app_factory(inline_wait=timedelta(hours=1))
    register(second_app)
    async with second_app:
        await wait_for(lambda: len(blockers) == 3)
        for event in blockers:
            event.set()
        for index in range(3):
            assert await second_app.handle(f"worker-{index}").result() == 1
        assert await second_app.handle("waiter").status() is WorkflowStatus.RUNNING


def leaves_its_leases(app: Durably) -> Durably:
    """Make closing ``app`` leave its leases to run out, as a killed process does (a
    clean close gives them up, and a run given up is not a crash)."""

    async def keep_leases(*, owner: str) -> int:
        return 0

    app.store.release_workflows = keep_leases  # type: ignore[method-assign]
    return app


async def test_workflow_is_parked_after_too_many_recovery_attempts(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """A workflow whose runs never end (their processes die) is parked instead of
    being retried forever."""
    gate = asyncio.Event()
    starts: list[int] = []

    def register(app: Durably) -> object:
        async def hang() -> None:
            starts.append(1)
            await gate.wait()

        @app.workflow(name="hangs")
        async def hangs(ctx: Context) -> None:
            await ctx.step("hang", hang)

        return hangs

    for attempt in range(3):
        app = leaves_its_leases(app_factory(max_recovery_attempts=1))
        workflow = register(app)
        clock.advance(timedelta(hours=1))  # the previous app's leases run out
        async with app:
            if attempt == 0:
                await app.start(workflow, workflow_id="crashy")  # type: ignore[arg-type]
                await wait_for(lambda: len(starts) == 1)
            elif attempt == 1:
                await wait_for(lambda: len(starts) == 2)
            else:
                info = await app.get_workflow("crashy")
                for _ in range(1000):
                    if info.status is WorkflowStatus.PARKED:
                        break
                    await asyncio.sleep(0)
                    info = await app.get_workflow("crashy")
                assert info.status is WorkflowStatus.PARKED
                assert info.error is not None
                assert "recovery attempts" in info.error.message
    assert len(starts) == 2


async def test_clean_restarts_during_a_long_step_never_park_the_workflow(
    app_factory: Callable[..., Durably],
) -> None:
    """Each clean close gives the run up (a rolling deploy, a SIGTERM): the next app
    takes it over, but no number of them counts as a crash."""
    gate = asyncio.Event()
    starts: list[int] = []

    async def long_step() -> str:
        starts.append(1)
        await gate.wait()
        return "done"

    for restart in range(5):
        app = app_factory(max_recovery_attempts=1)

        @app.workflow(name="long")
        async def long(ctx: Context) -> str:
            return await ctx.step("long-step", long_step)

        async with app:
            if restart == 0:
                await app.start(long, workflow_id="deployed-under")
            await wait_for(lambda restart=restart: len(starts) == restart + 1)
            info = await app.get_workflow("deployed-under")
            assert (info.status, info.recovery_attempts) == (
                WorkflowStatus.RUNNING,
                0 if restart == 0 else 1,
            )
            if restart == 4:
                gate.set()
                assert await app.handle("deployed-under").result() == "done"


class RecordingObserver(Observer):
    """Keeps the hooks it receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_workflow_start(self, workflow_id: str, workflow_name: str) -> None:
        self.events.append(("start", workflow_id))

    def on_workflow_finish(self, workflow_id: str, status: WorkflowStatus) -> None:
        self.events.append(("finish", status))

    def on_step_start(self, workflow_id: str, step_name: str, seq: int) -> None:
        self.events.append(("step_start", step_name))

    def on_step_complete(
        self, workflow_id: str, step_name: str, seq: int, elapsed: timedelta
    ) -> None:
        self.events.append(("step_complete", step_name))

    def on_step_retry(
        self, workflow_id: str, step_name: str, attempt: int, error: BaseException
    ) -> None:
        self.events.append(("retry", attempt))

    def on_compensation_start(self, workflow_id: str, names: list[str]) -> None:
        self.events.append(("compensation_start", tuple(names)))

    def on_recovery_start(self, workflow_id: str) -> None:
        self.events.append(("recovery_start", workflow_id))

    def on_recovery_complete(self, workflow_id: str, succeeded: bool) -> None:
        self.events.append(("recovery_complete", succeeded))


class ExplodingObserver(Observer):
    """Raises from every hook it implements."""

    def on_workflow_start(self, workflow_id: str, workflow_name: str) -> None:
        raise RuntimeError("observer bug")


async def test_observers_see_every_hook_and_cannot_break_a_workflow(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """Start, step, retry, compensation and finish hooks fire; a raising observer is ignored."""
    observer = RecordingObserver()
    app = app_factory(observers=[ExplodingObserver(), observer])
    attempts: list[int] = []

    async def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("retry me")
        return 1

    async def undo(value: int) -> None:
        return None

    async def fail() -> None:
        raise ValueError("boom")

    from durably import RetryPolicy

    @app.workflow()
    async def observed(ctx: Context) -> None:
        await ctx.step("flaky", flaky, retry=RetryPolicy.fixed(3, 0), compensate=undo)
        await ctx.step("fail", fail)

    async with app:
        handle = await app.start(observed)
        with pytest.raises(Exception, match="boom"):
            await handle.result()
    kinds = [kind for kind, _ in observer.events]
    assert kinds[0] == "start"
    assert ("retry", 1) in observer.events
    assert ("step_complete", "flaky") in observer.events
    assert ("compensation_start", ("flaky:compensate",)) in observer.events
    assert observer.events[-1] == ("finish", WorkflowStatus.COMPENSATED)


class ClaimsFailingOnce(MemoryStore):
    """A store whose first claim raises what no store error handler expects (a bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def claim_due_workflows(self, **kwargs: Any) -> list[WorkflowRecord]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the claim")
        return await super().claim_due_workflows(**kwargs)


async def queued_answer(
    store: MemoryStore, clock: FakeClock, worker: Durably, workflow_id: str
) -> WorkflowHandle[Any]:
    """Register the workflow "answer" (returns 42) in ``worker`` and start it from a
    client app on ``store``: it waits for a worker's claim."""
    client = Durably(store, clock=clock, worker=False)
    for app in (client, worker):

        @app.workflow(name="answer")
        async def answer(ctx: Context) -> int:
            return 42

    async with client:
        return await client.start("answer", workflow_id=workflow_id)


async def test_an_unexpected_error_in_the_claim_loop_is_logged_and_claiming_goes_on(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The claim loop reports an unexpected error with its traceback and claims at the
    next poll: a worker never looks alive while claiming nothing."""
    store = ClaimsFailingOnce()
    worker = Durably(store, clock=clock, poll_interval=timedelta(seconds=1))
    handle = await queued_answer(store, clock, worker, "queued-before-the-worker")
    with caplog.at_level(logging.ERROR, logger="durably.worker"):
        async with worker:
            await wait_for(lambda: store.failed)
            clock.advance(timedelta(seconds=1))
            assert await worker.handle(handle.workflow_id).result() == 42
    assert "claiming work failed unexpectedly" in caplog.text
    assert "RuntimeError: a bug in the claim" in caplog.text


async def test_taking_over_an_unfinished_run_is_logged(
    app_factory: Callable[..., Durably], caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that claims a workflow whose previous run never finished says so."""
    runs: list[str] = []
    gate = asyncio.Event()
    first_app = app_factory()
    three_steps = counting_workflow(first_app, runs, gate)
    async with first_app:
        handle = await first_app.start(three_steps, workflow_id="taken-over")  # type: ignore[arg-type]
        await wait_for(lambda: "second" in runs)
    second_app = app_factory()
    counting_workflow(second_app, runs, gate)
    gate.set()
    with caplog.at_level(logging.INFO, logger="durably.worker"):
        async with second_app:
            assert await second_app.handle(handle.workflow_id).result() == "abc"
    assert "recovering 1 workflow(s) whose previous run did not finish: taken-over" in caplog.text


class ListingSignalsBlocks(MemoryStore):
    """Holds ``list_signals`` (what a workflow's end reads to find its parent) until
    ``release`` is set, once ``reached`` says it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def list_signals(self, workflow_id: str) -> Any:
        self.reached.set()
        await self.release.wait()
        return await super().list_signals(workflow_id)


async def test_closing_while_an_ended_run_tells_its_parent_logs_no_error(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A claimed workflow (it may be a child) that ended and is still looking for a
    parent to tell when the app closes is stopped quietly: its end is recorded, and
    nothing is logged as failed."""
    store = ListingSignalsBlocks()
    worker = Durably(store, clock=clock)
    handle = await queued_answer(store, clock, worker, "ended")
    with caplog.at_level(logging.ERROR, logger="durably"):
        async with worker:
            await store.reached.wait()  # recorded COMPLETED; now looking for a parent
            stored = await store.get_workflow(handle.workflow_id)
            assert stored is not None and stored.status is WorkflowStatus.COMPLETED
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_closing_with_grace_when_the_last_run_ends_while_claims_stop(
    clock: FakeClock,
) -> None:
    """Closing with a grace period first stops the claims; a run that ends meanwhile
    leaves nothing to wait for, and the close goes on (it once failed on an empty
    wait, and a worker stopped by SIGTERM exited with an error)."""
    store = MemoryStore()
    app = Durably(store, clock=clock)
    release = asyncio.Event()

    async def wait_for_release() -> str:
        await release.wait()
        return "done"

    @app.workflow()
    async def held(ctx: Context) -> str:
        return await ctx.step("wait", wait_for_release)

    await app.open()
    handle = await app.start(held)
    stop_claiming = app._worker.stop_claiming
    run = app._runs[handle.workflow_id][1]

    async def stop_claiming_while_the_run_ends() -> None:
        release.set()
        await run  # the last run has ended before the claims stop
        await stop_claiming()

    app._worker.stop_claiming = stop_claiming_while_the_run_ends  # type: ignore[method-assign]
    await app.close(grace=5)
    stored = await store.get_workflow(handle.workflow_id)
    assert stored is not None and stored.status is WorkflowStatus.COMPLETED

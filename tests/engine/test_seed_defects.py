"""One test per defect of the original project that we must not repeat (seed-spec §20).

Several defects are also covered where the feature is tested; each test here is named
after the seed's identifier so that the checklist can be audited. The rest of the
"must fix" list is proven where its feature is tested:

- G-10 (cancel compensates, interrupts a running step or a backoff, never overwrites a
  finished workflow): tests/engine/test_timers_and_cancel.py ``test_cancel_*``; its
  observer part is here.
- G-14 (COMPENSATING and PENDING workflows are recovered; compensation progress is
  durable): tests/engine/test_saga.py ``test_compensation_resumes_after_a_stop*`` and
  tests/engine/test_recovery.py.
- G-33 (a consumed signal survives a restart; closing leaves workflows recoverable):
  tests/engine/test_signals.py ``test_consumed_signal_is_replayed_after_a_restart``,
  tests/engine/test_recovery.py ``test_closing_an_app_leaves_its_workflows_recoverable``.
- G-34 (recovery never waits for one workflow before the next):
  tests/engine/test_recovery.py ``test_recovery_does_not_wait_for_a_blocked_workflow``.
- G-40 (examples that run and are tested): tests/examples/, and ``.ci/run`` type-checks
  and lints examples/.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from durably import (
    Context,
    Durably,
    Observer,
    PayloadError,
    RetryPolicy,
    SqliteStore,
    WorkflowFailedError,
    WorkflowStatus,
)
from durably.errors import LeaseLostError
from durably.models import Fence
from durably.testing import FakeClock


async def test_g01_engine_runs_on_a_fresh_sqlite_file_with_foreign_keys_on(
    tmp_path: Path,
) -> None:
    """G-01: the default SQLite store works with foreign keys enforced."""
    app = Durably(SqliteStore(tmp_path / "fk.db"))

    @app.workflow()
    async def hello(ctx: Context) -> str:
        return await ctx.step("greet", lambda: "hi")

    async with app:
        assert await app.run(hello) == "hi"
    connection = sqlite3.connect(tmp_path / "fk.db")
    try:
        assert connection.execute("PRAGMA foreign_key_list(operations)").fetchall()
    finally:
        connection.close()


async def test_g11_closing_the_app_does_not_fail_waiting_workflows(
    app_factory: Callable[..., Durably],
) -> None:
    """G-11: closing leaves a waiting workflow recoverable, not FAILED or compensated."""
    undone: list[int] = []
    app = app_factory(inline_wait=timedelta(hours=1))

    async def undo(value: int) -> None:
        undone.append(value)

    @app.workflow(name="waiting")
    async def waiting(ctx: Context) -> object:
        await ctx.step("one", lambda: 1, compensate=undo)
        return await ctx.wait_signal("go")

    async with app:
        handle = await app.start(waiting, workflow_id="g11")
        for _ in range(5_000):
            if (await app.store.load_history("g11")).operations:
                break
            await asyncio.sleep(0)
    reopened = app_factory()

    @reopened.workflow(name="waiting")
    async def waiting_again(ctx: Context) -> object:
        await ctx.step("one", lambda: 1, compensate=undo)
        return await ctx.wait_signal("go")

    async with reopened:
        status = await reopened.handle(handle.workflow_id).status()
        assert status in (WorkflowStatus.RUNNING, WorkflowStatus.SUSPENDED)
    assert undone == []


class FinishRecorder(Observer):
    """Records the finish hooks it receives."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, WorkflowStatus]] = []

    def on_workflow_finish(self, workflow_id: str, status: WorkflowStatus) -> None:
        self.finished.append((workflow_id, status))


async def test_g10_cancelling_a_workflow_nobody_runs_tells_the_observers_once(
    app_factory: Callable[..., Durably],
) -> None:
    """G-10: a cancel that ends a suspended workflow at once (no run to tell them)
    notifies the observers, once however often it is repeated."""
    observer = FinishRecorder()
    app = app_factory(observers=[observer], inline_wait=timedelta(0))

    @app.workflow()
    async def napping(ctx: Context) -> None:
        await ctx.sleep("nap", timedelta(hours=1))

    async with app:
        handle = await app.start(napping, workflow_id="g10-idle")
        for _ in range(5_000):
            if await handle.status() is WorkflowStatus.SUSPENDED:
                break
            await asyncio.sleep(0)
        assert await handle.status() is WorkflowStatus.SUSPENDED
        assert await app.cancel("g10-idle") is WorkflowStatus.CANCELLED
        assert await app.cancel("g10-idle") is WorkflowStatus.CANCELLED
    assert observer.finished == [("g10-idle", WorkflowStatus.CANCELLED)]


async def test_g10_cancelling_a_running_workflow_tells_the_observers_once(
    app_factory: Callable[..., Durably],
) -> None:
    """G-10: the run that stops on the request reports the end, the request does not."""
    observer = FinishRecorder()
    app = app_factory(observers=[observer])
    started = asyncio.Event()

    async def block() -> None:
        started.set()
        await asyncio.Event().wait()

    @app.workflow()
    async def blocked(ctx: Context) -> None:
        await ctx.step("block", block)

    async with app:
        handle = await app.start(blocked, workflow_id="g10-running")
        await started.wait()
        await app.cancel("g10-running")
        with pytest.raises(WorkflowFailedError):
            await handle.result()
        assert await handle.status() is WorkflowStatus.CANCELLED
    assert observer.finished == [("g10-running", WorkflowStatus.CANCELLED)]


async def test_g16_error_formatter_applies_to_step_and_workflow_errors(
    app_factory: Callable[..., Durably],
) -> None:
    """G-16: the error formatter redacts every stored error, step attempts included."""
    app = app_factory(error_formatter=lambda error: str(error).replace("4111", "****"))

    async def charge() -> None:
        raise ValueError("card 4111 declined")

    @app.workflow()
    async def paying(ctx: Context) -> None:
        await ctx.step("charge", charge, retry=RetryPolicy.fixed(2, 0))

    async with app:
        handle = await app.start(paying)
        with pytest.raises(WorkflowFailedError):
            await handle.result()
        history = await app.store.load_history(handle.workflow_id)
        info = await handle.info()
    stored = [history.operations[0].error or "", info.error.message if info.error else ""]
    stored += [attempt.error for attempt in history.attempts[0]]
    assert all("****" in text and "4111" not in text for text in stored)


async def test_g21_completion_never_overwrites_a_status_changed_under_it(
    app: Durably,
) -> None:
    """G-21: status writes are compare-and-set: a stale fence writes nothing."""

    @app.workflow()
    async def quick(ctx: Context) -> int:
        return 1

    handle = await app.start(quick)
    await handle.result()
    record = await app.store.get_workflow(handle.workflow_id)
    assert record is not None
    stale = Fence(workflow_id=record.workflow_id, owner=app.executor_id, fence=1)
    with pytest.raises(LeaseLostError):
        await app.store.set_workflow_status(stale, WorkflowStatus.FAILED, now=0)
    assert await handle.status() is WorkflowStatus.COMPLETED


@dataclass
class Receipt:
    amount: int


async def test_g27_unannotated_custom_result_fails_at_the_first_run(app: Durably) -> None:
    """G-27: a value that would not decode on replay fails at once, naming the step."""

    async def untyped():  # type: ignore[no-untyped-def]  # the point of the test
        return Receipt(5)

    @app.workflow()
    async def receipts(ctx: Context) -> None:
        await ctx.step("make-receipt", untyped)

    with pytest.raises(WorkflowFailedError) as caught:
        await app.run(receipts)
    assert caught.value.error_type == "PayloadError"
    assert "make-receipt" in (caught.value.error_message or "")
    assert "Receipt" in (caught.value.error_message or "")
    assert isinstance(caught.value.__cause__, PayloadError)


async def test_g30_a_finished_sleep_is_not_slept_again_after_a_restart(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """G-30: sleep is replay-aware; a sleep that ended before the crash is not repeated."""
    gate = asyncio.Event()
    entered = asyncio.Event()

    def register(app: Durably) -> object:
        async def hold() -> str:
            entered.set()
            await gate.wait()
            return "held"

        @app.workflow(name="sleep-then-hold")
        async def sleep_then_hold(ctx: Context) -> str:
            await ctx.sleep("nap", timedelta(milliseconds=100))
            return await ctx.step("hold", hold)

        return sleep_then_hold

    first = app_factory()
    workflow = register(first)
    async with first:
        await first.start(workflow, workflow_id="g30")  # type: ignore[arg-type]
        await clock.wait_for_sleepers(3)
        clock.advance(timedelta(milliseconds=100))
        await entered.wait()
    gate.set()
    second = app_factory()
    register(second)
    async with second:
        assert await second.handle("g30").result() == "held"


async def test_g31_signal_payloads_keep_their_json_types(app: Durably) -> None:
    """G-31: a bool payload arrives as a bool, a dict as a dict (not their str())."""

    @app.workflow()
    async def typed(ctx: Context) -> list[object]:
        return [
            await ctx.wait_signal("flag", payload_type=bool),
            await ctx.wait_signal("data"),
        ]

    handle = await app.start(typed)
    await app.send_signal(handle.workflow_id, "flag", True)
    await app.send_signal(handle.workflow_id, "data", {"a": [1, 2]})
    assert await handle.result() == [True, {"a": [1, 2]}]


async def test_e04_a_completed_workflow_keeps_no_stale_error(app: Durably) -> None:
    """E-04: failed attempts before a success leave no error on the completed workflow."""
    calls: list[int] = []

    async def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("transient")
        return 7

    @app.workflow()
    async def recovers(ctx: Context) -> int:
        return await ctx.step("flaky", flaky, retry=RetryPolicy.fixed(2, 0))

    handle = await app.start(recovers)
    assert await handle.result() == 7
    info = await handle.info()
    assert info.status is WorkflowStatus.COMPLETED
    assert info.error is None

"""Debounced recovery requests: many requests, one pass; every pass's report streamed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from durably import AppClosedError, Context, Durably, RecoveryReport, WorkflowStatus
from durably.recovery_trigger import RecoveryTrigger
from durably.testing import FakeClock

SECOND = 1_000_000


class CountingRecovery:
    """A recovery pass that counts its calls; ``gate`` holds a pass while it runs."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.running = asyncio.Event()

    async def __call__(self) -> int:
        self.calls += 1
        self.running.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.calls


async def settle() -> None:
    """Let every ready task run."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_requests_within_the_window_are_served_by_one_pass(clock: FakeClock) -> None:
    recover = CountingRecovery()
    trigger: RecoveryTrigger[int] = RecoveryTrigger(
        clock=clock, recover=recover, debounce=2 * SECOND
    )
    trigger.bind(asyncio.get_running_loop())
    reports = trigger.subscribe()
    for _ in range(4):  # at 0, 0.5, 1 and 1.5 seconds: inside the first one's window
        trigger.request()
        await settle()
        assert recover.calls == 0, "the pass ran before its window ended"
        clock.advance(0.5)  # the last advance ends the window
    assert await anext(reports) == 1
    clock.advance(60)
    await settle()
    assert recover.calls == 1
    await trigger.close()
    assert [report async for report in reports] == []


async def test_a_request_during_a_pass_gets_a_pass_of_its_own(clock: FakeClock) -> None:
    """The running pass may have looked before the change: one more pass follows it,
    however many requests came in meanwhile."""
    recover = CountingRecovery()
    recover.gate = asyncio.Event()
    trigger: RecoveryTrigger[int] = RecoveryTrigger(clock=clock, recover=recover, debounce=SECOND)
    trigger.bind(asyncio.get_running_loop())
    reports = trigger.subscribe()
    trigger.request()
    clock.advance(1)
    await recover.running.wait()
    trigger.request()
    trigger.request()
    recover.gate.set()
    assert await anext(reports) == 1
    await settle()
    assert recover.calls == 1, "the next pass waits for its own window"
    clock.advance(1)
    assert await anext(reports) == 2
    clock.advance(60)
    await settle()
    assert recover.calls == 2
    await trigger.close()


async def test_requests_from_other_threads_are_coalesced(clock: FakeClock) -> None:
    recover = CountingRecovery()
    trigger: RecoveryTrigger[int] = RecoveryTrigger(clock=clock, recover=recover, debounce=SECOND)
    trigger.bind(asyncio.get_running_loop())
    reports = trigger.subscribe()
    await asyncio.gather(*(asyncio.to_thread(trigger.request) for _ in range(8)))
    await settle()
    clock.advance(1)
    assert await anext(reports) == 1
    clock.advance(60)
    await settle()
    assert recover.calls == 1
    await trigger.close()


async def test_a_failed_pass_is_logged_and_the_next_request_runs_again(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[BaseException | int] = [RuntimeError("database is down"), 7]

    async def recover() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    trigger: RecoveryTrigger[int] = RecoveryTrigger(clock=clock, recover=recover, debounce=0)
    trigger.bind(asyncio.get_running_loop())
    reports = trigger.subscribe()
    trigger.request()
    await settle()
    assert "a requested recovery pass failed" in caplog.text
    trigger.request()
    assert await anext(reports) == 7
    await trigger.close()


def blocking_workflow(app: Durably, gate: asyncio.Event, runs: list[str]) -> None:
    @app.workflow(name="blocks")
    async def blocks(ctx: Context) -> str:
        async def wait() -> str:
            runs.append("step")
            await gate.wait()
            return "done"

        return await ctx.step("wait", wait)


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_a_requested_recovery_resumes_released_work_and_reports_it(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """Another app released a workflow; three requests make one pass that resumes it.

    (Not on PostgreSQL: its change feed wakes the claim loop, which would take the
    workflow before the requested pass.)
    """
    gate = asyncio.Event()
    runs: list[str] = []
    # A long poll keeps the background claim loop asleep: only the request claims.
    app = app_factory(poll_interval=timedelta(hours=1), recovery_debounce=2)
    blocking_workflow(app, gate, runs)
    other = app_factory()
    blocking_workflow(other, gate, runs)
    async with app:
        reports = app.recovery_reports()
        async with other:
            await other.start("blocks", workflow_id="released")
            for _ in range(10_000):
                if runs:
                    break
                await asyncio.sleep(0)
            assert runs == ["step"]
        assert (await app.get_workflow("released")).owner is None
        gate.set()
        for _ in range(3):
            app.request_recovery()
        clock.advance(2)
        report = await anext(reports)
        assert isinstance(report, RecoveryReport)
        assert report.resumed == ("released",)
        assert await app.handle("released").result() == "done"
        assert (await app.get_workflow("released")).status is WorkflowStatus.COMPLETED
    assert [item async for item in reports] == [], "the stream ends when the app closes"
    with pytest.raises(AppClosedError):
        app.request_recovery()

"""The blocking facade: same behaviour, no asyncio in user code."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

import durably
from durably import SyncContext, SyncDurably, WorkflowStatus


def test_sync_program_runs_a_workflow_without_asyncio(tmp_path: Path) -> None:
    """A def workflow with def steps runs end to end through SyncDurably."""
    with SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}") as app:

        @app.step()
        def add(a: int, b: int) -> int:
            return a + b

        @app.workflow()
        def adder(ctx: SyncContext, a: int, b: int) -> int:
            total = add(a, b)
            ctx.sleep("pause", 0)
            return total * 2

        handle = app.start(adder, 2, 3, workflow_id="sum")
        assert handle.result() == 10
        assert handle.status() is WorkflowStatus.COMPLETED
        assert app.get_workflow("sum").result_json == "10"


def test_sync_workflow_receives_signals(tmp_path: Path) -> None:
    """A def workflow blocks on wait_signal until a sync caller sends it."""
    with SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}") as app:

        @app.workflow()
        def approval(ctx: SyncContext) -> object:
            return ctx.wait_signal("approved")

        handle = app.start(approval)
        assert app.send_signal(handle.workflow_id, "approved", {"by": "ops"}) is True
        assert handle.result() == {"by": "ops"}


def test_sync_cancel_interrupts_a_def_workflow(tmp_path: Path) -> None:
    """Cancelling a def workflow blocked in an operation ends it CANCELLED."""
    with SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}", inline_wait=3600) as app:

        @app.workflow()
        def waits(ctx: SyncContext) -> object:
            return ctx.wait_signal("never")

        handle = app.start(waits)
        app.cancel(handle.workflow_id)
        with pytest.raises(durably.WorkflowFailedError) as caught:
            handle.result()
        assert caught.value.status == WorkflowStatus.CANCELLED


def test_sync_watch_yields_each_change_until_the_workflow_ends(tmp_path: Path) -> None:
    """app.watch blocks for each change of a def workflow and stops once it completes."""
    with SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}", inline_wait=3600) as app:

        @app.workflow()
        def approval(ctx: SyncContext) -> object:
            return ctx.wait_signal("approved")

        handle = app.start(approval, workflow_id="watched")
        seen: list[WorkflowStatus] = []
        for info in app.watch("watched"):
            assert info.workflow_id == "watched"
            seen.append(info.status)
            if len(seen) == 1:  # the first yield is the workflow as it is now
                handle.send_signal("approved", "yes")
        assert seen[-1] is WorkflowStatus.COMPLETED
        assert handle.result() == "yes"
        assert list(app.watch("no-such-workflow")) == []


def test_sync_request_recovery_reports_the_workflows_it_resumed(tmp_path: Path) -> None:
    """request_recovery() makes a pass that resumes a workflow another app released;
    recovery_reports() blocks for its report."""
    url = f"sqlite:///{tmp_path / 'sync.db'}"

    def register(app: SyncDurably) -> None:
        @app.workflow(name="approval")
        def approval(ctx: SyncContext) -> object:
            return ctx.wait_signal("approved")

    # A long poll keeps the claim loop asleep: only the requested pass claims.
    with SyncDurably(url, poll_interval=3600, recovery_debounce=0) as app:
        register(app)
        reports = app.recovery_reports()
        with SyncDurably(url, inline_wait=3600) as other:
            register(other)
            other.start("approval", workflow_id="released")
        assert app.get_workflow("released").owner is None
        app.request_recovery()
        report = next(reports)
        assert isinstance(report, durably.RecoveryReport)
        assert report.resumed == ("released",)
        app.send_signal("released", "approved", "yes")
        assert app.handle("released").result() == "yes"
    with pytest.raises(durably.AppClosedError):
        app.request_recovery()


async def test_sync_facade_refuses_to_block_a_running_loop(tmp_path: Path) -> None:
    """Calling the blocking API inside async code raises a clear RuntimeError."""
    app = SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}")
    with pytest.raises(RuntimeError, match="running event loop"):
        app.open()
    app.close()  # never opened: nothing to close
    await asyncio.sleep(0)


def test_sync_facade_has_every_public_method_of_the_async_app() -> None:
    """Parity: SyncDurably offers each public Durably method with the same parameters."""
    skipped = {"wait_for_result"}
    for name, member in inspect.getmembers(durably.Durably):
        if name.startswith("_") or name in skipped or not callable(member):
            continue
        assert hasattr(SyncDurably, name), f"SyncDurably lacks {name}"
        expected = list(inspect.signature(member).parameters)
        actual = list(inspect.signature(getattr(SyncDurably, name)).parameters)
        if name == "__init__":
            continue
        assert actual == expected, f"{name}: {actual} != {expected}"


def test_sync_handle_has_every_public_method_of_the_async_handle() -> None:
    """Parity between WorkflowHandle and SyncWorkflowHandle."""
    for name, member in inspect.getmembers(durably.WorkflowHandle):
        if name.startswith("_") or not callable(member):
            continue
        expected = list(inspect.signature(member).parameters)
        actual = list(inspect.signature(getattr(durably.SyncWorkflowHandle, name)).parameters)
        assert actual == expected, name


def test_sync_context_has_every_operation_of_the_async_context() -> None:
    """Parity between Context and SyncContext operations."""
    for name, member in inspect.getmembers(durably.Context):
        if name.startswith("_") or name in {
            "interrupt",
            "interruption",
            "wait_until_idle",
            "run_compensation",
        }:
            continue
        assert hasattr(SyncContext, name), f"SyncContext lacks {name}"
        if callable(member):
            expected = list(inspect.signature(member).parameters)
            actual = list(inspect.signature(getattr(SyncContext, name)).parameters)
            assert actual == expected, name

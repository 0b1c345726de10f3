"""SyncTestDurably: the test kit from code without async (def workflows, blocking calls)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from durably import NonDeterminismError, SyncContext, WorkflowStatus
from durably.testing import SyncTestDurably, TestDurably, crash_at


def test_a_def_workflow_sleeping_a_year_returns_at_once() -> None:
    """run() skips the year and the signal wait's timeout."""
    with SyncTestDurably() as app:

        @app.workflow()
        def renewal(ctx: SyncContext, plan: str) -> str:
            ctx.sleep("year", timedelta(days=365))
            answer = ctx.wait_signal("renew", timeout=timedelta(days=3))
            return f"{plan} {answer} {ctx.now():%Y-%m-%d}"

        assert app.run(renewal, "pro") == "pro None 2027-01-04"


def test_signals_and_advance_from_sync_code() -> None:
    """advance() lets time pass; a signal sent by the test is received."""
    with SyncTestDurably() as app:

        @app.workflow()
        def reminder(ctx: SyncContext) -> object:
            ctx.sleep("wait", timedelta(days=1))
            return ctx.wait_signal("answer", timeout=timedelta(days=7))

        start = app.clock.now()
        handle = app.start(reminder)
        app.advance(timedelta(days=2))
        assert handle.status() is WorkflowStatus.SUSPENDED
        assert app.clock.now() - start == timedelta(days=2) // timedelta(microseconds=1)
        handle.send_signal("answer", "yes")
        assert handle.result() == "yes"
        app.wait_until_idle()


@pytest.mark.parametrize(("when", "charges"), [("before", 1), ("before_record", 2), ("after", 1)])
def test_a_def_workflow_crashes_and_recovers(when: str, charges: int) -> None:
    """crash_at works with `with`; the def body's side effects are counted."""
    charged: list[int] = []

    def charge(amount: int) -> int:
        charged.append(amount)
        return amount

    with SyncTestDurably() as app:

        @app.workflow()
        def pay(ctx: SyncContext, amount: int) -> int:
            paid = ctx.step("charge", charge, amount)
            ctx.sleep("settle", timedelta(hours=24))
            return paid

        with crash_at(app, "charge", when=when) as crash:  # type: ignore[arg-type]
            assert app.run(pay, 7) == 7
        assert app.executor_id == "test-process-2"
    assert crash.crashed
    assert charged == [7] * charges


def test_always_replay_catches_a_def_workflow() -> None:
    """A def body reading state that changed since the first run is caught."""
    state = {"runs": 0}

    def noop() -> None:
        pass

    with SyncTestDurably(always_replay=True) as app:

        @app.workflow()
        def flip(ctx: SyncContext) -> None:
            state["runs"] += 1
            ctx.step("first" if state["runs"] == 1 else "second", noop)

        with pytest.raises(NonDeterminismError, match="history records step 'first'"):
            app.run(flip)


def test_always_replay_passes_a_deterministic_def_workflow() -> None:
    """Each step of a deterministic def workflow runs once."""
    done: list[str] = []

    def act(name: str) -> str:
        done.append(name)
        return name

    with SyncTestDurably(always_replay=True) as app:

        @app.workflow()
        def steps(ctx: SyncContext) -> str:
            return "".join(ctx.step(name, act, name) for name in "abc")

        start = app.clock.now()
        assert app.run(steps) == "abc"
        assert app.clock.now() == start  # no timer: no time passed
    assert done == ["a", "b", "c"]


def test_the_test_apps_are_not_collected_by_pytest() -> None:
    """The kit's Test-named classes tell pytest they are not test classes (this module
    imports them, and warnings are errors: a collection attempt would fail the run)."""
    assert SyncTestDurably.__test__ is False  # type: ignore[attr-defined]
    assert TestDurably.__test__ is False  # type: ignore[attr-defined]

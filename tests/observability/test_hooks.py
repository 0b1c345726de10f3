"""The run and attempt hooks: each start has one end; replayed steps call none; the
core works without OpenTelemetry installed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from tests.observability.conftest import RunWatcher

from durably import Context, Durably, MemoryStore, Observer, RetryPolicy, WorkflowFailedError
from durably.observers import AttemptEnd, AttemptInfo, RunEnd, RunInfo
from durably.testing import FakeClock


class Pairs(Observer):
    """Checks that every start hook is matched by exactly one end hook."""

    def __init__(self) -> None:
        self.open_runs: list[RunInfo] = []
        self.open_attempts: list[AttemptInfo] = []
        self.attempts: list[tuple[str, int, str]] = []
        self.step_starts: list[str] = []

    def on_step_start(self, workflow_id: str, step_name: str, seq: int) -> None:
        self.step_starts.append(step_name)

    def on_workflow_run_start(self, run: RunInfo) -> None:
        self.open_runs.append(run)

    def on_workflow_run_end(self, run: RunInfo, end: RunEnd) -> None:
        self.open_runs.remove(run)

    def on_step_attempt_start(self, attempt: AttemptInfo) -> None:
        self.open_attempts.append(attempt)

    def on_step_attempt_end(self, attempt: AttemptInfo, end: AttemptEnd) -> None:
        self.open_attempts.remove(attempt)
        assert end.finished_at >= attempt.started_at
        assert (end.error is None) == (end.outcome == "completed")
        self.attempts.append((attempt.step_name, attempt.attempt, end.outcome))


async def test_every_start_hook_has_one_end_hook(clock: FakeClock) -> None:
    """Completed, retried, failed, compensating and cancelled attempts all end; the
    attempt stopped by the cancellation is interrupted."""
    pairs, watcher = Pairs(), RunWatcher()
    app = Durably(MemoryStore(), clock=clock, observers=[pairs, watcher])
    calls: list[int] = []
    hanging = asyncio.Event()

    async def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        return 1

    async def undo(value: int) -> None:
        return None

    async def hang() -> None:
        hanging.set()
        await asyncio.Event().wait()

    async def fail() -> None:
        raise ValueError("no")

    @app.workflow(name="busy")
    async def busy(ctx: Context, cancel: bool) -> None:
        await ctx.step("flaky", flaky, retry=RetryPolicy.fixed(2, 0), compensate=undo)
        if cancel:
            await ctx.step("hang", hang)
        await ctx.step("fail", fail)

    async with app:
        with pytest.raises(WorkflowFailedError):
            await app.run(busy, False, workflow_id="busy-1")
        calls.clear()
        handle = await app.start(busy, True, workflow_id="busy-2")
        await hanging.wait()
        await app.cancel(handle.workflow_id)
        await watcher.wait_for("busy-2", "cancelled")

    assert pairs.open_runs == []
    assert pairs.open_attempts == []
    assert pairs.attempts[:4] == [
        ("flaky", 1, "retrying"),
        ("flaky", 2, "completed"),
        ("fail", 1, "failed"),
        ("flaky:compensate", 1, "completed"),
    ]
    assert pairs.attempts[4:] == [
        ("flaky", 1, "retrying"),
        ("flaky", 2, "completed"),
        ("hang", 1, "interrupted"),
    ]


async def test_replayed_steps_call_no_step_hook(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """Across a suspension, on_step_start and the attempt hooks fire once per live step."""
    pairs, watcher = Pairs(), RunWatcher()
    app = app_factory(observers=[pairs, watcher])

    async def noop() -> None:
        return None

    @app.workflow(name="twice")
    async def twice(ctx: Context) -> None:
        await ctx.step("before", noop)
        await ctx.sleep("nap", timedelta(hours=2))
        await ctx.step("after", noop)

    async with app:
        handle = await app.start(twice, workflow_id="twice-1")
        await watcher.wait_for("twice-1", "suspended")
        clock.advance(timedelta(hours=2))
        await handle.result()
        await watcher.wait_for("twice-1", "completed")
    assert pairs.step_starts == ["before", "after"]
    assert pairs.attempts == [("before", 1, "completed"), ("after", 1, "completed")]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where OpenTelemetry cannot be imported."""
    blocked = "import sys; sys.modules['opentelemetry'] = None\n"
    return subprocess.run(
        [sys.executable, "-c", blocked + code], capture_output=True, text=True, check=False
    )


def test_the_core_works_without_opentelemetry() -> None:
    """durably, its log fields and in-process metrics import without OpenTelemetry."""
    result = run_python(
        "import durably, durably.observability as o\n"
        "o.Metrics(); o.WorkflowLogFilter()\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_asking_for_opentelemetry_without_it_says_what_to_install() -> None:
    """OpenTelemetryObserver without the extra: an ImportError naming the extra."""
    result = run_python("from durably.observability import OpenTelemetryObserver\n")
    assert result.returncode == 1
    assert "ImportError: durably's OpenTelemetry support needs the otel extra" in result.stderr
    assert "pip install 'durably[otel]'" in result.stderr


def test_importing_durably_does_not_import_opentelemetry() -> None:
    """The extra stays optional: import durably loads none of it."""
    code = "import sys, durably, durably.observability; print('opentelemetry' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_unknown_names_are_attribute_errors() -> None:
    """The lazy package still says which name does not exist."""
    import durably.observability

    with pytest.raises(AttributeError, match="no attribute 'Tracer'"):
        durably.observability.Tracer  # noqa: B018
    assert "Metrics" in dir(durably.observability)

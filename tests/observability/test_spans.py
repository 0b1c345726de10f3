"""OpenTelemetry spans: one per workflow run and one per live step attempt."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tests.observability.conftest import RunWatcher, spans_named

from durably import (
    Context,
    Durably,
    MemoryStore,
    Observer,
    RetryPolicy,
    WorkflowFailedError,
)
from durably.observability import OpenTelemetryObserver
from durably.testing import FakeClock


def memory_app(clock: FakeClock, provider: TracerProvider, *observers: Observer) -> Durably:
    """An app on a MemoryStore traced into ``provider``."""
    tracing = OpenTelemetryObserver(tracer_provider=provider, metrics=False)
    return Durably(MemoryStore(), clock=clock, observers=[tracing, *observers])


async def test_run_and_step_spans_carry_the_workflow_and_step(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A completed workflow gives one run span and a child span per step, with the
    workflow id and name, step name, seq, attempt and outcome as attributes."""
    app = memory_app(clock, tracer_provider)

    async def reserve(item: str) -> str:
        return f"reserved {item}"

    async def ship(item: str) -> str:
        return f"shipped {item}"

    @app.workflow(name="order", version="v1")
    async def order(ctx: Context, item: str) -> str:
        await ctx.step("reserve", reserve, item)
        return await ctx.step("ship", ship, item)

    async with app:
        assert await app.run(order, "book", workflow_id="order-1") == "shipped book"

    [run] = spans_named(span_exporter, "workflow ")
    reserve_span, ship_span = spans_named(span_exporter, "step ")
    assert run.name == "workflow order"
    assert dict(run.attributes or {}) == {
        "durably.workflow.id": "order-1",
        "durably.workflow.name": "order",
        "durably.workflow.version": "v1",
        "durably.executor.id": app.executor_id,
        "durably.run.recovered": False,
        "durably.run.outcome": "completed",
    }
    assert run.status.status_code is StatusCode.UNSET
    assert reserve_span.name == "step reserve"
    assert dict(reserve_span.attributes or {}) == {
        "durably.workflow.id": "order-1",
        "durably.workflow.name": "order",
        "durably.step.name": "reserve",
        "durably.step.kind": "step",
        "durably.step.seq": 0,
        "durably.step.attempt": 1,
        "durably.step.idempotency_key": "order-1:0",
        "durably.step.outcome": "completed",
    }
    assert ship_span.attributes is not None and ship_span.attributes["durably.step.seq"] == 1
    for step in (reserve_span, ship_span):
        assert step.parent is not None and step.parent.span_id == run.context.span_id
        assert step.context.trace_id == run.context.trace_id


async def test_span_times_come_from_the_apps_clock(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A step that takes 2.5 virtual seconds has a span of exactly 2.5 seconds."""
    app = memory_app(clock, tracer_provider)

    async def slow() -> None:
        clock.advance(timedelta(seconds=2.5))

    @app.workflow()
    async def timed(ctx: Context) -> None:
        await ctx.step("slow", slow)

    started = clock.now()
    async with app:
        await app.run(timed)
    [step] = spans_named(span_exporter, "step ")
    assert step.start_time == started * 1000
    assert step.end_time is not None and step.end_time - step.start_time == 2_500_000_000


async def test_each_attempt_is_a_span_and_failures_are_errors(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A step failing twice then succeeding gives three attempt spans (the failed ones
    with an error status and the exception); a failed workflow's run span is an error."""
    app = memory_app(clock, tracer_provider)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"refused #{len(calls)}")
        return "ok"

    async def broken() -> None:
        raise ValueError("bad input")

    @app.workflow(name="fragile")
    async def fragile(ctx: Context) -> None:
        await ctx.step("flaky", flaky, retry=RetryPolicy.fixed(3, 0))
        await ctx.step("broken", broken)

    async with app:
        handle = await app.start(fragile, workflow_id="fragile-1")
        with pytest.raises(WorkflowFailedError):
            await handle.result()

    steps = spans_named(span_exporter, "step ")
    assert [
        (s.name, s.attributes["durably.step.attempt"], s.attributes["durably.step.outcome"])  # type: ignore[index]
        for s in steps
    ] == [
        ("step flaky", 1, "retrying"),
        ("step flaky", 2, "retrying"),
        ("step flaky", 3, "completed"),
        ("step broken", 1, "failed"),
    ]
    assert [s.status.status_code for s in steps] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
        StatusCode.ERROR,
    ]
    assert steps[0].status.description == "ConnectionError: refused #1"
    [exception] = [event for event in steps[3].events if event.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "bad input"
    [run] = spans_named(span_exporter, "workflow ")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None and run.attributes["durably.run.outcome"] == "failed"
    assert "ValueError: bad input" in (run.status.description or "")


async def test_compensations_have_their_own_spans(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """Compensations running after a failure are spans of kind compensation, and the
    run that compensated is an error."""
    app = memory_app(clock, tracer_provider)

    async def charge() -> int:
        return 42

    async def refund(payment: int) -> None:
        return None

    async def fail() -> None:
        raise RuntimeError("out of stock")

    @app.workflow(name="saga")
    async def saga(ctx: Context) -> None:
        await ctx.step("charge", charge, compensate=refund)
        await ctx.step("fail", fail)

    async with app:
        handle = await app.start(saga)
        with pytest.raises(WorkflowFailedError):
            await handle.result()

    [compensation] = spans_named(span_exporter, "compensation ")
    assert compensation.name == "compensation charge:compensate"
    assert compensation.attributes is not None
    assert compensation.attributes["durably.step.kind"] == "compensation"
    assert compensation.attributes["durably.step.outcome"] == "completed"
    [run] = spans_named(span_exporter, "workflow ")
    assert run.attributes is not None and run.attributes["durably.run.outcome"] == "compensated"
    assert run.status.status_code is StatusCode.ERROR
    assert compensation.parent is not None and compensation.parent.span_id == run.context.span_id


async def test_spans_made_inside_a_step_nest_under_its_span(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """The step's span is current while its function runs (async def on the loop, def
    in a worker thread), and the run's span while the body runs."""
    app = memory_app(clock, tracer_provider)
    tracer = trace.get_tracer("user-code", tracer_provider=tracer_provider)
    threads: list[str] = []

    async def call_api() -> None:
        with tracer.start_as_current_span("http call"):
            pass

    def write_file() -> None:
        threads.append(threading.current_thread().name)
        with tracer.start_as_current_span("disk write"):
            pass

    @app.workflow(name="nested")
    async def nested(ctx: Context) -> None:
        with tracer.start_as_current_span("body work"):
            pass
        await asyncio.gather(ctx.step("api", call_api), ctx.step("file", write_file))

    async with app:
        await app.run(nested)

    by_name = {span.name: span for span in span_exporter.get_finished_spans()}
    assert threads and threads[0] != threading.current_thread().name
    run_id = by_name["workflow nested"].context.span_id
    assert by_name["body work"].parent.span_id == run_id  # type: ignore[union-attr]
    assert by_name["http call"].parent.span_id == by_name["step api"].context.span_id  # type: ignore[union-attr]
    assert by_name["disk write"].parent.span_id == by_name["step file"].context.span_id  # type: ignore[union-attr]
    assert by_name["step api"].parent.span_id == run_id  # type: ignore[union-attr]
    assert by_name["step file"].parent.span_id == run_id  # type: ignore[union-attr]


async def test_the_first_run_is_a_child_of_the_span_that_started_it(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """Starting a workflow inside a span (a web request, say) puts its run in that trace."""
    app = memory_app(clock, tracer_provider)
    tracer = trace.get_tracer("web", tracer_provider=tracer_provider)

    @app.workflow(name="signup")
    async def signup(ctx: Context) -> str:
        return "welcome"

    async with app:
        with tracer.start_as_current_span("POST /signup") as request:
            handle = await app.start(signup)
        await handle.result()
    [run] = spans_named(span_exporter, "workflow ")
    assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id


async def test_replayed_steps_make_no_spans_after_a_suspension(
    app_factory: Callable[..., Durably],
    clock: FakeClock,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    watcher: RunWatcher,
) -> None:
    """A workflow that sleeps for a day has two runs; the second replays the first
    step without a span, and its run span links to the first run's span."""
    app = app_factory(
        observers=[OpenTelemetryObserver(tracer_provider=tracer_provider, metrics=False), watcher]
    )
    ran: list[str] = []

    async def remind(what: str) -> str:
        ran.append(what)
        return what

    @app.workflow(name="reminder")
    async def reminder(ctx: Context) -> str:
        await ctx.step("first", remind, "first")
        await ctx.sleep("a day", timedelta(days=1))
        return await ctx.step("second", remind, "second")

    async with app:
        handle = await app.start(reminder, workflow_id="remind-1")
        await watcher.wait_for("remind-1", "suspended")
        assert [span.name for span in spans_named(span_exporter, "step ")] == ["step first"]
        clock.advance(timedelta(days=1))
        assert await handle.result() == "second"
        await watcher.wait_for("remind-1", "completed")

    assert ran == ["first", "second"]
    steps = spans_named(span_exporter, "step ")
    assert [(s.name, s.attributes["durably.step.seq"]) for s in steps] == [  # type: ignore[index]
        ("step first", 0),
        ("step second", 2),
    ]
    first_run, second_run = spans_named(span_exporter, "workflow ")
    assert first_run.attributes is not None
    assert first_run.attributes["durably.run.outcome"] == "suspended"
    assert second_run.attributes is not None
    assert second_run.attributes["durably.run.outcome"] == "completed"
    assert [link.context.span_id for link in second_run.links] == [first_run.context.span_id]
    assert steps[1].parent is not None and steps[1].parent.span_id == second_run.context.span_id


async def test_replayed_steps_make_no_spans_after_a_recovery(
    app_factory: Callable[..., Durably],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    watcher: RunWatcher,
) -> None:
    """An app stopped in the middle of a step: its attempt span ends as interrupted.
    The app that recovers the workflow replays the finished step without a span and
    runs the interrupted one again: one span per live attempt, none per replay."""
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[str] = []

    async def book() -> str:
        runs.append("book")
        return "booked"

    async def pay() -> str:
        runs.append("pay")
        started.set()
        await release.wait()
        return "paid"

    def register(app: Durably) -> object:
        @app.workflow(name="trip")
        async def trip(ctx: Context) -> str:
            await ctx.step("book", book)
            return await ctx.step("pay", pay)

        return trip

    observer = OpenTelemetryObserver(tracer_provider=tracer_provider, metrics=False)
    first_app = app_factory(observers=[observer, watcher])
    trip = register(first_app)
    async with first_app:
        await first_app.start(trip, workflow_id="trip-1")  # type: ignore[call-overload]
        await started.wait()
    await watcher.wait_for("trip-1", "abandoned")
    release.set()

    second_app = app_factory(observers=[observer, watcher])
    register(second_app)
    async with second_app:
        assert await second_app.handle("trip-1").result() == "paid"

    assert runs == ["book", "pay", "pay"]
    steps = spans_named(span_exporter, "step ")
    assert [
        (s.name, s.attributes["durably.step.attempt"], s.attributes["durably.step.outcome"])  # type: ignore[index]
        for s in steps
    ] == [
        ("step book", 1, "completed"),
        ("step pay", 1, "interrupted"),
        ("step pay", 1, "completed"),
    ]
    first_run, second_run = spans_named(span_exporter, "workflow ")
    assert first_run.attributes is not None and second_run.attributes is not None
    assert first_run.attributes["durably.run.outcome"] == "abandoned"
    assert second_run.attributes["durably.run.recovered"] is True
    assert second_run.attributes["durably.run.outcome"] == "completed"
    assert [link.context.span_id for link in second_run.links] == [first_run.context.span_id]
    assert [event.name for event in steps[1].events] == ["interrupted"]


async def test_a_retry_after_a_long_backoff_continues_the_attempt_count(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A retry delay longer than inline_wait suspends the workflow; the next run's
    attempt span says attempt 2, and the failed first attempt has no second span."""
    watcher = RunWatcher()
    app = memory_app(clock, tracer_provider, watcher)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        return "up"

    @app.workflow(name="patient")
    async def patient(ctx: Context) -> str:
        return await ctx.step("flaky", flaky, retry=RetryPolicy.fixed(2, timedelta(minutes=1)))

    async with app:
        handle = await app.start(patient, workflow_id="patient-1")
        await watcher.wait_for("patient-1", "suspended")
        clock.advance(timedelta(minutes=1))
        assert await handle.result() == "up"

    steps = spans_named(span_exporter, "step ")
    assert [
        (s.attributes["durably.step.attempt"], s.attributes["durably.step.outcome"])  # type: ignore[index]
        for s in steps
    ] == [(1, "retrying"), (2, "completed")]
    assert status_codes(steps) == [StatusCode.ERROR, StatusCode.UNSET]


def status_codes(spans: list[ReadableSpan]) -> list[StatusCode]:
    """The status codes of spans."""
    return [span.status.status_code for span in spans]


async def test_a_parked_workflow_is_an_error_run(
    clock: FakeClock, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A run that finds the code no longer matches the history parks the workflow; its
    span is an error naming the non-determinism."""
    watcher = RunWatcher()
    app = memory_app(clock, tracer_provider, watcher)
    step_name = ["original"]

    async def noop() -> None:
        return None

    @app.workflow(name="shifty")
    async def shifty(ctx: Context) -> None:
        await ctx.step(step_name[0], noop)
        await ctx.sleep("pause", timedelta(days=1))

    async with app:
        await app.start(shifty, workflow_id="shifty-1")
        await watcher.wait_for("shifty-1", "suspended")
        step_name[0] = "renamed"
        clock.advance(timedelta(days=1))
        await watcher.wait_for("shifty-1", "parked")

    _first_run, second_run = spans_named(span_exporter, "workflow ")
    assert second_run.status.status_code is StatusCode.ERROR
    assert "NonDeterminismError" in (second_run.status.description or "")
    assert [span.name for span in spans_named(span_exporter, "step ")] == ["step original"]

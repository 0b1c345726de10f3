"""Log records carry the workflow id and name, the step, its seq and attempt."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from tests.observability.conftest import RunWatcher

from durably import Context, Durably, MemoryStore, Observer, RetryPolicy, SyncContext
from durably.observability import (
    FIELDS,
    JsonLogFormatter,
    WorkflowLogFilter,
    add_workflow_fields,
    workflow_log_fields,
)
from durably.observers import AttemptEnd, AttemptInfo
from durably.testing import FakeClock

user_log = logging.getLogger("shop.steps")


def fields_of(record: logging.LogRecord) -> tuple[object, ...]:
    """The workflow fields set on a record, in FIELDS order."""
    return tuple(getattr(record, name) for name in FIELDS)


@contextlib.contextmanager
def filtering(handler: logging.Handler, log_filter: logging.Filter) -> Iterator[None]:
    """``log_filter`` on ``handler`` for a while (pytest keeps caplog's handler across
    tests, so a filter left on it would leak into the next ones)."""
    handler.addFilter(log_filter)
    try:
        yield
    finally:
        handler.removeFilter(log_filter)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG with the workflow filter on its handler."""
    caplog.set_level(logging.DEBUG)
    with filtering(caplog.handler, WorkflowLogFilter()):
        yield caplog


async def test_records_inside_steps_carry_the_step(
    clock: FakeClock, captured: pytest.LogCaptureFixture
) -> None:
    """Records logged in async and def steps (worker thread), and in a retried step,
    carry the workflow, the step, its seq and its attempt."""
    app = Durably(MemoryStore(), clock=clock)
    attempts: list[int] = []

    async def reserve() -> None:
        user_log.info("reserving")

    def print_label() -> None:
        user_log.info("printing")

    async def notify() -> None:
        attempts.append(1)
        user_log.info("notifying")
        if len(attempts) == 1:
            raise ConnectionError("mail server down")

    @app.workflow(name="fulfil")
    async def fulfil(ctx: Context) -> None:
        await ctx.step("reserve", reserve)
        await ctx.step("label", print_label)
        await ctx.step("notify", notify, retry=RetryPolicy.fixed(2, 0))

    async with app:
        await app.run(fulfil, workflow_id="fulfil-1")

    mine = [r for r in captured.records if r.name == "shop.steps"]
    assert [(r.getMessage(), *fields_of(r)) for r in mine] == [
        ("reserving", "fulfil-1", "fulfil", "reserve", 0, 1, False),
        ("printing", "fulfil-1", "fulfil", "label", 1, 1, False),
        ("notifying", "fulfil-1", "fulfil", "notify", 2, 1, False),
        ("notifying", "fulfil-1", "fulfil", "notify", 2, 2, False),
    ]


async def test_records_of_the_body_and_of_durably_carry_the_workflow(
    clock: FakeClock, captured: pytest.LogCaptureFixture
) -> None:
    """A record logged by the workflow body has the workflow but no step; durably's own
    records about a run (here an observer that fails, and an abandoned run) carry it
    too; records outside any workflow have None fields."""

    class Failing(Observer):
        def on_step_attempt_end(self, attempt: AttemptInfo, end: AttemptEnd) -> None:
            raise RuntimeError("observer bug")

    app = Durably(MemoryStore(), clock=clock, observers=[Failing()])
    blocked = asyncio.Event()

    async def wait_forever() -> None:
        blocked.set()
        await asyncio.Event().wait()

    @app.workflow(name="audit")
    async def audit(ctx: Context) -> None:
        user_log.info("body says hello")
        await ctx.step("check", lambda: None)
        await ctx.step("hang", wait_forever)

    user_log.info("outside")
    async with app:
        await app.start(audit, workflow_id="audit-1")
        await blocked.wait()

    outside, body = (r for r in captured.records if r.name == "shop.steps")
    assert fields_of(outside) == (None, None, None, None, None, False)
    assert fields_of(body) == ("audit-1", "audit", None, None, None, False)
    durably_records = [r for r in captured.records if r.name.startswith("durably")]
    messages = [r.getMessage() for r in durably_records]
    assert any("failed in on_step_attempt_end" in m for m in messages), messages
    assert any("abandoned" in m for m in messages), messages
    for record in durably_records:
        assert (record.workflow_id, record.workflow_name) == ("audit-1", "audit")  # type: ignore[attr-defined]


async def test_replayed_body_records_are_marked_and_can_be_dropped(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """After a suspension the body runs again from the top: its records logged while
    replaying say replaying=True, and drop_replayed=True keeps only the live ones."""
    caplog.set_level(logging.INFO)
    everything: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            everything.append(record)

    keep = Keep()
    keep.addFilter(WorkflowLogFilter())
    user_log.addHandler(keep)
    watcher = RunWatcher()
    app = Durably(MemoryStore(), clock=clock, observers=[watcher])

    async def noop() -> None:
        return None

    @app.workflow(name="patient")
    async def patient(ctx: Context) -> None:
        user_log.info("before the step")
        await ctx.step("prepare", noop)
        user_log.info("before the sleep")
        await ctx.sleep("rest", timedelta(hours=1))
        user_log.info("after the sleep")

    try:
        with filtering(caplog.handler, WorkflowLogFilter(drop_replayed=True)):
            async with app:
                handle = await app.start(patient, workflow_id="patient-1")
                await watcher.wait_for("patient-1", "suspended")
                clock.advance(timedelta(hours=1))
                await handle.result()
    finally:
        user_log.removeHandler(keep)

    assert [(r.getMessage(), r.replaying) for r in everything] == [  # type: ignore[attr-defined]
        ("before the step", False),
        ("before the sleep", False),
        ("before the step", True),
        ("before the sleep", True),
        ("after the sleep", False),
    ]
    assert [r.getMessage() for r in caplog.records if r.name == "shop.steps"] == [
        "before the step",
        "before the sleep",
        "after the sleep",
    ]


async def test_fields_given_with_extra_are_kept_and_missing_ones_use_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """extra= wins over the context; outside a workflow the fields read ``missing``."""
    caplog.set_level(logging.INFO)
    with filtering(caplog.handler, WorkflowLogFilter(missing="-")):
        user_log.info("by hand", extra={"workflow_id": "given"})
    [record] = caplog.records
    assert fields_of(record) == ("given", "-", "-", "-", "-", False)


async def test_json_formatter_and_structlog_processor_show_the_fields(clock: FakeClock) -> None:
    """JsonLogFormatter writes one JSON object per record with the fields that apply;
    add_workflow_fields adds them to a structlog event dict."""
    lines: list[str] = []
    events: list[dict[str, object]] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Lines()
    handler.addFilter(WorkflowLogFilter())
    handler.setFormatter(JsonLogFormatter())
    user_log.addHandler(handler)
    app = Durably(MemoryStore(), clock=clock)

    async def charge() -> None:
        user_log.warning("card declined once")
        events.append(dict(add_workflow_fields(None, "info", {"event": "charging"})))

    @app.workflow(name="pay")
    async def pay(ctx: Context) -> None:
        await ctx.step("charge", charge)

    try:
        async with app:
            await app.run(pay, workflow_id="pay-1")
    finally:
        user_log.removeHandler(handler)

    [line] = lines
    entry = json.loads(line)
    assert entry["message"] == "card declined once"
    assert entry["level"] == "WARNING"
    assert {
        key: entry[key] for key in ("workflow_id", "workflow_name", "step", "seq", "attempt")
    } == {
        "workflow_id": "pay-1",
        "workflow_name": "pay",
        "step": "charge",
        "seq": 0,
        "attempt": 1,
    }
    assert "replaying" not in entry
    assert events == [
        {
            "event": "charging",
            "workflow_id": "pay-1",
            "workflow_name": "pay",
            "step": "charge",
            "seq": 0,
            "attempt": 1,
        }
    ]
    assert workflow_log_fields()["workflow_id"] is None


async def test_a_def_workflow_and_its_steps_carry_the_fields(
    clock: FakeClock, captured: pytest.LogCaptureFixture
) -> None:
    """A plain ``def`` workflow runs in a worker thread and its steps in others; their
    records carry the fields as well."""
    app = Durably(MemoryStore(), clock=clock)

    def weigh() -> int:
        user_log.info("weighing")
        return 3

    @app.workflow(name="parcel")
    def parcel(ctx: SyncContext) -> int:
        user_log.info("sync body")
        return ctx.step("weigh", weigh)

    async with app:
        assert await app.run(parcel, workflow_id="parcel-1") == 3  # type: ignore[arg-type]

    assert [
        (r.getMessage(), *fields_of(r)) for r in captured.records if r.name == "shop.steps"
    ] == [
        ("sync body", "parcel-1", "parcel", None, None, None, False),
        ("weighing", "parcel-1", "parcel", "weigh", 0, 1, False),
    ]

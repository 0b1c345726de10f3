"""A payload over the configured size limit is refused at the first run: at the call
for inputs (of a workflow started, enqueued or started as a child), signals, events
and stream entries, when the step or workflow first produces it otherwise; never
stored, never discovered later at recovery."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlite_faults import rows

from durably import (
    Context,
    Durably,
    PayloadError,
    PayloadTooLargeError,
    RetryPolicy,
    SqliteStore,
    WorkflowFailedError,
    WorkflowStatus,
)

LIMIT = 10_000


def make_app(path: Path, limit: int = LIMIT, **options: object) -> tuple[Durably, list[int]]:
    app = Durably(SqliteStore(path), max_payload_bytes=limit, **options)  # type: ignore[arg-type]
    calls: list[int] = []

    async def produce(size: int) -> str:
        calls.append(size)
        return "y" * size

    @app.workflow(name="echo")
    async def echo(ctx: Context, payload: str) -> int:
        return len(payload)

    @app.workflow(name="step-result")
    async def step_result(ctx: Context, size: int) -> int:
        produced = await ctx.step("produce", produce, size, retry=RetryPolicy.fixed(3, 0))
        return len(produced)

    @app.workflow(name="own-result")
    async def own_result(ctx: Context, size: int) -> str:
        return "z" * size

    @app.workflow(name="listener")
    async def listener(ctx: Context) -> object:
        return await ctx.wait_signal("data")

    @app.workflow(name="parent")
    async def parent(ctx: Context, size: int) -> object:
        return await ctx.run_child("echo", "c" * size)

    @app.workflow(name="tolerant-parent")
    async def tolerant_parent(ctx: Context, size: int) -> str:
        try:
            await ctx.start_child("echo", "c" * size)
        except PayloadTooLargeError as error:
            refused = type(error).__name__
        else:
            refused = "nothing"
        await ctx.wait_signal("go")  # suspends: the rest runs again by replay
        return refused

    @app.workflow(name="publisher")
    async def publisher(ctx: Context, where: str, size: int) -> str:
        if where == "event":
            await ctx.set_event("news", "e" * size)
        else:
            await ctx.write_stream("news", "e" * size)
        return "published"

    @app.workflow(name="tolerant-publisher")
    async def tolerant_publisher(ctx: Context, size: int) -> str:
        try:
            await ctx.set_event("news", "e" * size)
        except PayloadTooLargeError:
            await ctx.set_event("news", "small instead")
        await ctx.wait_signal("go")  # suspends: the rest runs again by replay
        return "published"

    return app, calls


def stored_input_size(path: Path, workflow_id: str) -> int:
    connection = sqlite3.connect(path)
    try:
        (text,) = connection.execute(
            "SELECT input FROM workflows WHERE workflow_id = ?", (workflow_id,)
        ).fetchone()
    finally:
        connection.close()
    return len(text.encode("utf-8"))


async def test_an_input_exactly_at_the_limit_is_taken_one_byte_more_is_refused(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The limit is on the encoded bytes: at the limit accepted; one byte over refused
    at start() with the size, the limit and what to do; nothing stored."""
    path = tmp_path / "durably.db"
    payload = "é" * 3000  # 6,000 bytes in UTF-8: the limit counts bytes, not characters
    roomy, _ = make_app(path, limit=1_000_000)
    async with roomy:
        await roomy.run("echo", payload, workflow_id="measure")
    size = stored_input_size(path, "measure")
    exact, _ = make_app(path, limit=size)
    async with exact:
        assert await exact.run("echo", payload, workflow_id="at-limit") == 3000
    tight, _ = make_app(path, limit=size - 1)
    async with tight:
        before = rows(path)
        with pytest.raises(PayloadTooLargeError) as refused:
            await tight.start("echo", payload, workflow_id="over-limit")
        assert rows(path) == before
    message = str(refused.value)
    assert f"{size:,} bytes" in message and f"{size - 1:,}" in message, message
    assert "over-limit" in message and "max_payload_bytes" in message, message
    record_property("bad_inputs", 1)


async def test_a_step_result_over_the_limit_fails_the_step_at_its_first_run(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The step runs once (the error is not retried: retrying cannot shrink it), the
    workflow fails naming the step, and no oversized result is stored; a restart
    changes nothing."""
    path = tmp_path / "durably.db"
    app, calls = make_app(path)
    async with app:
        with pytest.raises(WorkflowFailedError) as failed:
            await app.run("step-result", LIMIT + 1, workflow_id="big-step")
        history = await app.store.load_history("big-step")
    assert calls == [LIMIT + 1]
    assert failed.value.error_type == "PayloadTooLargeError"
    assert "produce" in (failed.value.error_message or "")
    assert all(
        operation.result is None or len(operation.result) <= LIMIT
        for operation in history.operations.values()
    )
    again, calls_again = make_app(path)
    async with again:
        assert await again.handle("big-step").status() is WorkflowStatus.FAILED
    assert calls_again == []
    record_property("bad_inputs", 1)


async def test_a_workflow_result_over_the_limit_fails_it_at_its_first_run(tmp_path: Path) -> None:
    """The workflow's own result over the limit: FAILED with the reason, not stored."""
    app, _ = make_app(tmp_path / "durably.db")
    async with app:
        with pytest.raises(WorkflowFailedError) as failed:
            await app.run("own-result", LIMIT + 1, workflow_id="big-result")
        record = await app.store.get_workflow("big-result")
    assert failed.value.error_type == "PayloadTooLargeError"
    assert record is not None and record.result is None


async def test_a_signal_over_the_limit_is_refused_and_the_inbox_unchanged(tmp_path: Path) -> None:
    """send_signal refuses an oversized payload; the workflow still gets the next one."""
    path = tmp_path / "durably.db"
    app, _ = make_app(path)
    async with app:
        handle = await app.start("listener", workflow_id="listening")
        before = rows(path)["signals"]
        with pytest.raises(PayloadTooLargeError, match="signal 'data'"):
            await app.send_signal("listening", "data", "s" * (LIMIT + 1))
        assert rows(path)["signals"] == before
        await app.send_signal("listening", "data", "small")
        assert await handle.result() == "small"


def stored_payload_sizes(path: Path) -> list[int]:
    """The size of every payload stored anywhere (inputs, results, operation results,
    signals), in bytes."""
    connection = sqlite3.connect(path)
    try:
        texts = [
            text
            for statement in (
                "SELECT input FROM workflows",
                "SELECT result FROM workflows",
                "SELECT result FROM operations",
                "SELECT error FROM operations",
                "SELECT payload FROM signals",
            )
            for (text,) in connection.execute(statement)
            if text is not None
        ]
    finally:
        connection.close()
    return [len(text.encode("utf-8")) for text in texts]


async def test_a_child_input_over_the_limit_fails_the_parent_and_creates_no_child(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """ctx.run_child with an oversized argument: the child is never created, the
    parent fails with PayloadTooLargeError naming the child's input and the limit, and
    a restart changes nothing."""
    path = tmp_path / "durably.db"
    app, _ = make_app(path)
    async with app:
        with pytest.raises(WorkflowFailedError) as failed:
            await app.run("parent", LIMIT + 1, workflow_id="parent")
        workflows = [info.workflow_id for info in await app.list_workflows(limit=100)]
    assert workflows == ["parent"], "an oversized child was created"
    assert failed.value.error_type == "PayloadTooLargeError"
    message = failed.value.error_message or ""
    assert "the input of workflow 'parent:0'" in message and f"{LIMIT:,}" in message, message
    assert max(stored_payload_sizes(path)) <= LIMIT
    again, _ = make_app(path)
    async with again:
        assert await again.handle("parent").status() is WorkflowStatus.FAILED
        assert [info.workflow_id for info in await again.list_workflows(limit=100)] == workflows
    record_property("bad_inputs", 1)


async def test_a_refused_child_input_is_refused_again_on_replay_never_created(
    tmp_path: Path,
) -> None:
    """A parent that catches the refusal and goes on: after a restart its replay meets
    the same refusal (recorded), still without creating the child, and finishes."""
    path = tmp_path / "durably.db"
    app, _ = make_app(path, inline_wait=0)
    async with app:
        await app.start("tolerant-parent", LIMIT + 1, workflow_id="parent")
        await wait_until_suspended(app, "parent")
    again, _ = make_app(path, inline_wait=0)
    async with again:
        await again.send_signal("parent", "go", None)
        assert await again.handle("parent").result() == "PayloadTooLargeError"
        assert [info.workflow_id for info in await again.list_workflows(limit=100)] == ["parent"]
    assert max(stored_payload_sizes(path)) <= LIMIT


async def wait_until_suspended(app: Durably, workflow_id: str) -> None:
    async for info in app.watch(workflow_id):
        if info.status is WorkflowStatus.SUSPENDED:
            return
    raise AssertionError(f"{workflow_id} ended instead of suspending")


@pytest.mark.parametrize("where", ["event", "stream"])
async def test_an_event_or_stream_entry_over_the_limit_fails_at_the_call(
    tmp_path: Path, where: str, record_property: Callable[[str, object], None]
) -> None:
    """ctx.set_event / ctx.write_stream with an oversized value: refused at the call
    (PayloadTooLargeError naming it), the workflow fails, nothing is published (a
    reader gets nothing), and nothing oversized is stored."""
    path = tmp_path / "durably.db"
    app, _ = make_app(path)
    async with app:
        with pytest.raises(WorkflowFailedError) as failed:
            await app.run("publisher", where, LIMIT + 1, workflow_id="publisher")
        assert await app.get_event("publisher", "news", timeout=timedelta(0)) is None
        assert [entry async for entry in app.read_stream("publisher", "news")] == []
        history = await app.store.load_history("publisher")
    assert failed.value.error_type == "PayloadTooLargeError"
    what = "event 'news'" if where == "event" else "an entry of stream 'news'"
    assert what in (failed.value.error_message or ""), failed.value.error_message
    assert history.operations == {}
    assert max(stored_payload_sizes(path)) <= LIMIT
    record_property("bad_inputs", 1)


async def test_a_refused_event_is_refused_again_on_replay_and_the_replacement_kept(
    tmp_path: Path,
) -> None:
    """A workflow that catches the refusal and sets a smaller value: after a restart
    its replay meets the same refusal and replays the smaller value, which readers
    get; the oversized one is never stored."""
    path = tmp_path / "durably.db"
    app, _ = make_app(path, inline_wait=0)
    async with app:
        await app.start("tolerant-publisher", LIMIT + 1, workflow_id="publisher")
        await wait_until_suspended(app, "publisher")
        assert await app.get_event("publisher", "news") == "small instead"
    again, _ = make_app(path, inline_wait=0)
    async with again:
        await again.send_signal("publisher", "go", None)
        assert await again.handle("publisher").result() == "published"
        assert await again.get_event("publisher", "news") == "small instead"
    assert max(stored_payload_sizes(path)) <= LIMIT


async def test_an_enqueued_input_over_the_limit_is_refused_at_the_call(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """app.enqueue refuses an oversized input as start() does: at the call, naming the
    workflow id and the limit; nothing is stored; an input under the limit is queued."""
    path = tmp_path / "durably.db"
    app, _ = make_app(path)
    app.queue("bulk")
    async with app:
        before = rows(path)
        with pytest.raises(PayloadTooLargeError) as refused:
            await app.enqueue("echo", "q" * (LIMIT + 1), queue="bulk", workflow_id="queued-big")
        assert rows(path) == before
        queued = await app.enqueue("echo", "q" * (LIMIT - 100), queue="bulk", workflow_id="fits")
        assert await queued.result() == LIMIT - 100
    message = str(refused.value)
    assert "queued-big" in message and f"{LIMIT:,}" in message, message
    assert isinstance(refused.value, PayloadError)
    record_property("bad_inputs", 1)

"""A payload over the configured size limit is refused at the first run: at the call
for inputs and signals, when the step or workflow first produces it otherwise; never
stored, never discovered later at recovery."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlite_faults import rows

from durably import (
    Context,
    Durably,
    PayloadTooLargeError,
    RetryPolicy,
    SqliteStore,
    WorkflowFailedError,
    WorkflowStatus,
)

LIMIT = 10_000


def make_app(path: Path, limit: int = LIMIT) -> tuple[Durably, list[int]]:
    app = Durably(SqliteStore(path), max_payload_bytes=limit)
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

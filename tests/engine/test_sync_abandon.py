"""A plain ``def`` workflow whose run is abandoned (the app closes, the process
crashes) leaves nothing for asyncio to complain about: the error its thread ends
with ("Task exception was never retrieved") is retrieved, not logged."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from durably import Durably, MemoryStore
from durably.sync_context import SyncContext
from durably.testing import FakeClock, TestDurably, crash_at

HANG_GUARD = 20.0  # wall-clock seconds: only to fail instead of hanging


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the running loop's exception handler receives during the test."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


async def settle(body_done: threading.Event) -> None:
    """Wait for the body's thread to end, then let asyncio drop what is unreferenced."""
    assert await asyncio.to_thread(body_done.wait, HANG_GUARD), "the body thread never ended"
    for _ in range(20):
        await asyncio.sleep(0)
    gc.collect()
    await asyncio.sleep(0)


def never_retrieved(seen: list[dict[str, Any]]) -> list[str]:
    return [
        f"{context.get('message')}: {context.get('exception')!r}"
        for context in seen
        if "never retrieved" in str(context.get("message"))
    ]


async def test_closing_the_app_during_a_def_workflow_logs_nothing(
    loop_errors: list[dict[str, Any]],
) -> None:
    """app.close() abandons the run while its thread waits on a step; when the step
    ends the thread's next operation raises the abandon, and nobody logs it."""
    started, release, body_done = threading.Event(), threading.Event(), threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(HANG_GUARD)
        return "x"

    app = Durably(MemoryStore(), clock=FakeClock())

    @app.workflow(name="blocked")
    def blocked(ctx: SyncContext) -> str:
        try:
            ctx.step("first", blocking)
            ctx.step("second", blocking)
            return "done"
        finally:
            body_done.set()

    async with app:
        await app.start(blocked)
        assert await asyncio.to_thread(started.wait, HANG_GUARD)
        release.set()
    await settle(body_done)
    assert never_retrieved(loop_errors) == []


async def test_a_crash_during_a_def_workflow_logs_nothing(
    loop_errors: list[dict[str, Any]],
) -> None:
    """Another workflow crashes the test kit's process while a def workflow's thread
    waits on a step: the crash abandons that run too, the new process recovers both,
    and the dead run's thread leaves no unretrieved error behind."""
    started, release, body_done = threading.Event(), threading.Event(), threading.Event()
    calls: list[str] = []

    def blocking() -> str:
        calls.append("blocking")
        started.set()
        release.wait(HANG_GUARD)
        return "x"

    async def charge() -> str:
        calls.append("charge")
        return "paid"

    async with TestDurably() as app:

        @app.workflow(name="waiter")
        def waiter(ctx: SyncContext) -> str:
            try:
                return ctx.step("blocking", blocking) + ctx.step("again", blocking)
            finally:
                body_done.set()

        @app.workflow(name="checkout")
        async def checkout(ctx: Any) -> str:
            return str(await ctx.step("charge", charge))

        async with crash_at(app, "charge", when="after") as crash:
            waiting = await app.start(waiter)
            assert await asyncio.to_thread(started.wait, HANG_GUARD)
            paying = await app.start(checkout)
            await crash.wait()
        release.set()
        await settle(body_done)
        assert never_retrieved(loop_errors) == []
        assert await paying.result() == "paid"
        assert await waiting.result() == "xx"
    assert calls.count("charge") == 1

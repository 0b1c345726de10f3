"""A program for crash tests: runs an order workflow (retries, sleep, signal,
compensation) and a failing one, on a SQLite file, optionally killing itself.

Usage: python crash_program.py DB LOG [CRASH]
CRASH is ``before:N`` / ``after:N`` (SIGKILL at the N-th workflow write boundary) or
``inside:STEP`` (SIGKILL inside that step's body, after its side effect).
Prints one JSON line: the outcome of both workflows and the boundaries seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import durably
from durably import Context, Durably, RetryPolicy, SqliteStore, WorkflowFailedError
from durably.testing.faults import CrashAt, FaultInjectingStore

#: Writes that advance a workflow; background loops (claims, heartbeats) are not
#: counted so that the N-th boundary is the same point in every run.
PROGRESS_WRITES = frozenset(
    {
        "create_workflow",
        "record_operation",
        "record_attempt",
        "set_workflow_status",
        "suspend_workflow",
        "append_signal",
        "consume_signal",
    }
)


def side_effect(log: Path, workflow: str, step: str) -> None:
    """Append one line per step execution, fsynced, as an external system would see it."""
    attempt = durably.current_step().attempt
    line = json.dumps({"pid": os.getpid(), "workflow": workflow, "step": step, "attempt": attempt})
    with log.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def build(database: Path, log: Path, crash: str | None) -> Durably:
    """The app, its store wrapped with the crash hook."""
    inside = crash.split(":", 1)[1] if crash and crash.startswith("inside:") else None
    hook = CrashAt("never", 0)
    if crash and not inside:
        phase, count = crash.split(":")
        hook = CrashAt(phase, int(count), PROGRESS_WRITES)
    counter = CrashAt("after", -1, PROGRESS_WRITES)

    def both(phase: str, method: str) -> None:
        counter(phase, method)
        hook(phase, method)

    store = FaultInjectingStore(SqliteStore(database), both)
    app = Durably(
        store,  # type: ignore[arg-type]
        poll_interval=timedelta(milliseconds=50),
        inline_wait=0,
        lease_duration=timedelta(seconds=30),
    )
    app.boundaries = counter  # type: ignore[attr-defined]

    def effect(workflow: str, step: str) -> None:
        side_effect(log, workflow, step)
        if step == inside:
            os.kill(os.getpid(), signal.SIGKILL)

    async def reserve() -> str:
        effect("order-1", "reserve")
        return "R"

    async def release(reservation: str) -> None:
        effect("order-1", "release")

    async def charge() -> str:
        effect("order-1", "charge")
        if durably.current_step().attempt == 1:
            raise ConnectionError("payment gateway timeout")
        return "C"

    async def ship(approval: str) -> str:
        effect("order-1", "ship")
        return f"S({approval})"

    @app.workflow(name="order")
    async def order(ctx: Context) -> str:
        reservation = await ctx.step("reserve", reserve, compensate=release)
        payment = await ctx.step("charge", charge, retry=RetryPolicy.fixed(3, 0.05))
        await ctx.sleep("settle", timedelta(milliseconds=100))
        approval = await ctx.wait_signal("approve", timeout=timedelta(minutes=5))
        shipped = await ctx.step("ship", ship, str(approval))
        return f"{reservation}|{payment}|{shipped}"

    async def book() -> str:
        effect("fail-1", "book")
        return "B"

    async def unbook(booking: str) -> None:
        effect("fail-1", "unbook")

    async def pay() -> None:
        effect("fail-1", "pay")
        raise PermissionError("card declined")

    @app.workflow(name="failing")
    async def failing(ctx: Context) -> None:
        await ctx.step("book", book, compensate=unbook)
        await ctx.step("pay", pay)

    return app


async def main() -> None:
    database, log = Path(sys.argv[1]), Path(sys.argv[2])
    crash = sys.argv[3] if len(sys.argv) > 3 else None
    app = build(database, log, crash)
    outcome: dict[str, object] = {}
    async with app:
        handle = await app.start("order", workflow_id="order-1")
        with contextlib.suppress(durably.WorkflowFinishedError):
            await app.send_signal("order-1", "approve", "yes", dedup_key="approve-1")
        outcome["order"] = await handle.result()
        failing = await app.start("failing", workflow_id="fail-1")
        try:
            await failing.result()
        except WorkflowFailedError as error:
            outcome["failing"] = [error.status, error.error_message]
    outcome["boundaries"] = app.boundaries.seen  # type: ignore[attr-defined]
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

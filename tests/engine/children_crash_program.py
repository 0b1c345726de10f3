"""A program for the child-workflow crash test: a parent that gathers a step and two
children, maps over two more children and finishes with a step, on a SQLite file,
optionally killing itself with SIGKILL.

Usage: python children_crash_program.py DB LOG [after:N]
``after:N`` kills the process right after the N-th workflow write commits. Prints one
JSON line: the parent's result, the children's statuses and the boundaries seen.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import durably
from durably import Context, Durably, SqliteStore
from durably.testing.faults import CrashAt, FaultInjectingStore

#: Writes that advance workflows (claims and heartbeats are not counted).
PROGRESS_WRITES = frozenset(
    {
        "create_workflow",
        "record_operation",
        "set_workflow_status",
        "suspend_workflow",
        "append_signal",
        "request_cancel",
    }
)


def build(database: Path, log: Path, crash: str | None) -> Durably:
    """The app, its store wrapped with the crash hook."""
    hook = CrashAt("never", 0)
    if crash:
        phase, count = crash.split(":")
        hook = CrashAt(phase, int(count), PROGRESS_WRITES)
    counter = CrashAt("after", -1, PROGRESS_WRITES)

    def both(phase: str, method: str) -> None:
        counter(phase, method)
        hook(phase, method)

    app = Durably(
        FaultInjectingStore(SqliteStore(database), both),  # type: ignore[arg-type]
        poll_interval=timedelta(milliseconds=50),
        inline_wait=0,
    )
    app.boundaries = counter  # type: ignore[attr-defined]

    def effect(name: str) -> None:
        step = durably.current_step()
        line = json.dumps({"pid": os.getpid(), "step": f"{step.workflow_id}/{name}"})
        with log.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    async def make(n: int) -> int:
        effect("make")
        return n * n

    async def prepare() -> str:
        effect("prepare")
        return "ready"

    async def finish(total: int) -> str:
        effect("finish")
        return f"total {total}"

    @app.workflow(name="part")
    async def part(ctx: Context, n: int) -> int:
        value = await ctx.step("make", make, n)
        await ctx.sleep("cool", timedelta(milliseconds=20))
        return value

    @app.workflow(name="assembly")
    async def assembly(ctx: Context) -> str:
        ready, first, second = await asyncio.gather(
            ctx.step("prepare", prepare), ctx.run_child(part, 1), ctx.run_child(part, 2)
        )
        mapped = await ctx.map(part, [3, 4], max_concurrency=1)
        return await ctx.step("finish", finish, first + second + sum(mapped.values)) + f" {ready}"

    return app


async def main() -> None:
    database, log = Path(sys.argv[1]), Path(sys.argv[2])
    app = build(database, log, sys.argv[3] if len(sys.argv) > 3 else None)
    async with app:
        handle = await app.start("assembly", workflow_id="asm")
        result = await handle.result(timeout=30)
        children = sorted(
            (info.workflow_id, str(info.status)) for info in await app.list_workflows(name="part")
        )
    outcome = {
        "result": result,
        "children": children,
        "boundaries": app.boundaries.seen,  # type: ignore[attr-defined]
    }
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

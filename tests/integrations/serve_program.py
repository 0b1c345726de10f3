"""A plain long-lived process: ``durably.serve(app)`` until SIGTERM.

Usage: ``python serve_program.py DIRECTORY GRACE_SECONDS``. The store is
``DIRECTORY/serve.db``. Workflow "finishes" waits in its step until the file
``DIRECTORY/go`` exists; workflow "hangs" waits in its step forever. Each step touches
``DIRECTORY/<workflow id>.started`` when it begins.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import durably

DIRECTORY = Path(sys.argv[1]) if len(sys.argv) > 1 else Path()
app = durably.Durably(
    f"sqlite:///{DIRECTORY / 'serve.db'}", executor_id="plain-process", poll_interval=0.05
)


def mark_started() -> None:
    step = durably.current_step()
    assert step is not None
    (DIRECTORY / f"{step.workflow_id}.started").touch()


@app.workflow(name="finishes")
async def finishes(ctx: durably.Context, name: str) -> str:
    async def wait_for_go() -> str:
        mark_started()
        while not (DIRECTORY / "go").exists():  # noqa: ASYNC110  (made by another process)
            await asyncio.sleep(0.01)
        return f"{name} finished"

    return await ctx.step("wait-for-go", wait_for_go)


@app.workflow(name="hangs", version="1")
async def hangs(ctx: durably.Context) -> str:
    async def hang() -> str:
        mark_started()
        await asyncio.Event().wait()
        return "unreachable"

    return await ctx.step("hang", hang)


if __name__ == "__main__":
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s %(message)s")
    durably.serve(app, grace=float(sys.argv[2]))

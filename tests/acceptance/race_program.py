"""A worker process for the race test: claims and runs workflows on a shared SQLite file
until every workflow of the batch has finished.

Usage: python race_program.py DB LOG COUNT
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from durably import Context, Durably, SqliteStore, WorkflowStatus


def build(database: Path, log: Path) -> Durably:
    """An app whose workflow logs each step execution with this process's pid.

    Both processes must take part for the race to be a race: a process that starts
    first could otherwise run the whole batch before the other claims any. So each
    step, once logged, waits until the log shows steps of two processes; a process
    runs at most five workflows at a time, so the other always finds some to claim.
    """
    app = Durably(
        SqliteStore(database),
        poll_interval=timedelta(milliseconds=20),
        claim_batch_size=5,
        max_concurrent_workflows=5,
    )
    both_ran: list[bool] = []

    def effect(workflow_id: str, step: str) -> None:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(
                json.dumps({"pid": os.getpid(), "workflow": workflow_id, "step": step}) + "\n"
            )

    def pids_logged() -> int:
        lines = log.read_text(encoding="utf-8").splitlines()
        return len({json.loads(line)["pid"] for line in lines if line.endswith("}")})

    async def work(workflow_id: str, step: str) -> str:
        effect(workflow_id, step)
        while not both_ran:
            if pids_logged() == 2:
                both_ran.append(True)
            else:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return step

    @app.workflow(name="raced")
    async def raced(ctx: Context, n: int) -> int:
        for index in range(3):
            await ctx.step(f"step-{index}", work, ctx.workflow_id, f"step-{index}")
        return n

    return app


async def main() -> None:
    database, log, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    app = build(database, log)
    print("ready", flush=True)
    sys.stdin.readline()  # the test starts both workers at once
    async with app:
        while True:
            done = await app.list_workflows(status=WorkflowStatus.COMPLETED, limit=count)
            if len(done) == count:
                break
            await asyncio.sleep(0.02)


if __name__ == "__main__":
    asyncio.run(main())

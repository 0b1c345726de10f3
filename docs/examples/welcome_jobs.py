"""A queue of welcome e-mails shared by any number of worker processes.

Run workers with ``durably worker welcome_jobs:app`` (from this directory) and enqueue
with ``python welcome_jobs.py 20`` (that process is a worker too while it waits).
DURABLY_DB names the database (PostgreSQL here; an SQLite file works too, for workers
on one machine).
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

import durably

app = durably.Durably(
    os.environ.get("DURABLY_DB", "postgresql://postgres@127.0.0.1:5432/test"),
    max_concurrent_workflows=50,
)
emails = app.queue(
    "emails", concurrency=4, worker_concurrency=2, rate_limit=20, per=timedelta(seconds=1)
)


async def render(address: str) -> str:
    return f"Welcome aboard, {address}!"


async def deliver(address: str, body: str) -> str:
    # A real mail API would take durably.current_step().idempotency_key, so that a
    # delivery retried after a crash is not sent twice.
    await asyncio.sleep(0.2)
    return f"delivered by worker pid {os.getpid()}"


@app.workflow(name="welcome")
async def welcome(ctx: durably.Context, address: str) -> str:
    body = await ctx.step("render", render, address)
    receipt = await ctx.step("deliver", deliver, address, body)
    return f"{address}: {receipt}"


async def enqueue(count: int) -> None:
    """Enqueue ``count`` e-mails and print each result (this process works too)."""
    async with app:
        handles = [
            await app.enqueue(
                welcome, f"user{n}@example.com", queue=emails, workflow_id=f"welcome-{n}"
            )
            for n in range(count)
        ]
        for handle in handles:
            print(await handle.result())


if __name__ == "__main__":
    asyncio.run(enqueue(int(sys.argv[1]) if len(sys.argv) > 1 else 10))

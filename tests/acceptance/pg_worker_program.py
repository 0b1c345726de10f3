"""A worker process for the PostgreSQL scale-out tests: ``durably worker``'s serve()
on an app whose workflows take ten steps, with a short lease so that a stopped or
killed worker's workflows move to the others within seconds.

Usage: python pg_worker_program.py URL SCHEMA EXECUTOR_ID
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import timedelta

import psycopg
from psycopg import sql

from durably import Context, Durably
from durably.store.postgres import PostgresStore
from durably.worker_process import LOG_FORMAT, serve

STEPS = 10


def make_app(url: str, schema: str, executor_id: str | None = None, **options: object) -> Durably:
    """The app every process of the test builds (workers and the client alike)."""
    app = Durably(
        PostgresStore(url, schema=schema, pool_size=4),
        executor_id=executor_id,
        lease_duration=timedelta(seconds=4),
        poll_interval=timedelta(milliseconds=200),
        **options,  # type: ignore[arg-type]
    )

    async def work(n: int, step: int) -> int:
        await asyncio.sleep(0.02)  # a step that takes a moment, like real I/O
        return n * 100 + step

    limited = app.queue("limited", concurrency=3, worker_concurrency=2)
    paced = app.queue("paced", rate_limit=5, per=timedelta(seconds=1))

    async def timed(workflow_id: str) -> None:
        """Record when this step ran, in the test's table, from the database's clock."""
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            await connection.execute(
                sql.SQL(
                    "INSERT INTO {} (workflow_id, pid, started) VALUES (%s, %s, clock_timestamp())"
                ).format(sql.Identifier(schema, "step_times")),
                (workflow_id, os.getpid()),
            )
            await asyncio.sleep(0.1)
            await connection.execute(
                sql.SQL("UPDATE {} SET ended = clock_timestamp() WHERE workflow_id = %s").format(
                    sql.Identifier(schema, "step_times")
                ),
                (workflow_id,),
            )

    for queue in (limited, paced):

        async def queued_job(ctx: Context, workflow_id: str) -> str:
            await ctx.step("timed", timed, workflow_id)
            return workflow_id

        app.workflow(name=f"{queue.name}_job")(queued_job)

    @app.workflow(name="ten_steps")
    async def ten_steps(ctx: Context, n: int) -> int:
        total = 0
        for step in range(STEPS):
            total += await ctx.step(f"step-{step}", work, n, step)
        return total

    return app


def main() -> None:
    """Serve until SIGTERM."""
    url, schema, executor_id = sys.argv[1:4]
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    app = make_app(url, schema, executor_id, max_concurrent_workflows=40)
    asyncio.run(serve(app, grace=timedelta(seconds=5)))


if __name__ == "__main__":
    main()

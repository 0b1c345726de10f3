"""A worker process for the scale-out tests: ``durably worker``'s serve() on an app
whose workflows take ten steps, with a short lease so that a stopped or killed
worker's workflows move to the others within seconds.

The workers share a PostgreSQL schema (any number of processes and machines) or one
SQLite file (several processes on one machine). The queued jobs' step records when it
ran in the table ``step_times`` of that same database, which the test creates.

Usage: python pg_worker_program.py STORE_URL EXECUTOR_ID

STORE_URL is ``postgresql://...?schema=NAME`` (other query options, such as
``application_name``, go to the connections) or ``sqlite:///PATH``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from durably import Context, Durably, SqliteStore, Store
from durably.store import open_store
from durably.store.postgres import PostgresStore
from durably.worker_process import LOG_FORMAT, serve

STEPS = 10
#: How long a queued job's step takes: long enough for the runs of several workers
#: to overlap, so that the concurrency limit is what keeps them apart.
STEP_SECONDS = 0.1
#: The limits of the two queues: "limited" runs at most CONCURRENCY jobs at once, at
#: most WORKER_CONCURRENCY in one process; "paced" starts at most RATE_LIMIT jobs per
#: RATE_PERIOD.
CONCURRENCY = 3
WORKER_CONCURRENCY = 2
RATE_LIMIT = 5
RATE_PERIOD = timedelta(seconds=1)


def make_store(url: str) -> Store:
    """The store at ``url``; PostgreSQL with a pool of 4 connections, so that three
    workers and a client stay far below the server's connection limit."""
    if not url.startswith(("postgresql://", "postgres://")):
        return open_store(url)
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in options if key == "schema"]
    if not schemas:
        raise SystemExit(f"the PostgreSQL URL names no schema (add ?schema=NAME): {url}")
    rest = urlencode([(key, value) for key, value in options if key != "schema"])
    return PostgresStore(urlunsplit(parts._replace(query=rest)), schema=schemas[-1], pool_size=4)


def step_recorder(store: Store) -> Callable[[str], Awaitable[None]]:
    """The body of a queued job's step: it records in ``step_times`` when it started
    and ended (seconds since the epoch, as float) and which process ran it."""
    if isinstance(store, PostgresStore):
        return _postgres_recorder(store)
    if isinstance(store, SqliteStore):
        return _sqlite_recorder(store.path)
    raise SystemExit(f"no step_times table in a {type(store).__name__}")


def _postgres_recorder(store: PostgresStore) -> Callable[[str], Awaitable[None]]:
    """Times from the database's clock, which every worker's machine shares."""
    table = sql.Identifier(store.schema, "step_times")
    insert = sql.SQL(
        "INSERT INTO {} (workflow_id, pid, started)"
        " VALUES (%s, %s, extract(epoch FROM clock_timestamp()))"
    ).format(table)
    update = sql.SQL(
        "UPDATE {} SET ended = extract(epoch FROM clock_timestamp()) WHERE workflow_id = %s"
    ).format(table)

    async def timed(workflow_id: str) -> None:
        async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as connection:
            await connection.execute(insert, (workflow_id, os.getpid()))
            await asyncio.sleep(STEP_SECONDS)
            await connection.execute(update, (workflow_id,))

    return timed


def _sqlite_recorder(path: Path) -> Callable[[str], Awaitable[None]]:
    """Times from this machine's clock, read before writing (a write may wait for
    another process's lock)."""

    def write(statement: str, params: tuple[object, ...]) -> None:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            connection.execute(statement, params)
        finally:
            connection.close()

    async def timed(workflow_id: str) -> None:
        started = time.time()
        await asyncio.to_thread(
            write,
            "INSERT INTO step_times (workflow_id, pid, started) VALUES (?, ?, ?)",
            (workflow_id, os.getpid(), started),
        )
        await asyncio.sleep(STEP_SECONDS)
        ended = time.time()
        await asyncio.to_thread(
            write, "UPDATE step_times SET ended = ? WHERE workflow_id = ?", (ended, workflow_id)
        )

    return timed


def make_app(url: str, executor_id: str | None = None, **options: object) -> Durably:
    """The app every process of the test builds (workers and the client alike)."""
    store = make_store(url)
    app = Durably(
        store,
        executor_id=executor_id,
        lease_duration=timedelta(seconds=4),
        poll_interval=timedelta(milliseconds=200),
        **options,  # type: ignore[arg-type]
    )

    async def work(n: int, step: int) -> int:
        await asyncio.sleep(0.02)  # a step that takes a moment, like real I/O
        return n * 100 + step

    limited = app.queue("limited", concurrency=CONCURRENCY, worker_concurrency=WORKER_CONCURRENCY)
    paced = app.queue("paced", rate_limit=RATE_LIMIT, per=RATE_PERIOD)
    timed = step_recorder(store)

    for queue in (limited, paced):

        async def queued_job(ctx: Context) -> str:
            await ctx.step("timed", timed, ctx.workflow_id)
            return ctx.workflow_id

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
    url, executor_id = sys.argv[1:3]
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    app = make_app(url, executor_id, max_concurrent_workflows=40)
    asyncio.run(serve(app, grace=timedelta(seconds=5)))


if __name__ == "__main__":
    main()

"""A worker paused inside one of its transactions (SIGSTOP, a frozen VM, a long GC
pause) must not stall the other workers. The paused worker is played by a connection
that takes a queue's claim lock, as a worker's queue claim does, and then waits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
from tests.conftest import postgres_url

from durably import Context, Durably, WorkflowStatus
from durably.store.postgres import PostgresStore

#: A bound on each wait below, so that a regression fails instead of hanging.
GUARD = 30.0


def make_app(schema: str, *, worker: bool) -> Durably:
    app = Durably(
        PostgresStore(postgres_url(), schema=schema, pool_size=4),
        worker=worker,
        poll_interval=timedelta(milliseconds=50),
    )
    app.queue("jobs", concurrency=1)

    @app.workflow(name="answer")
    async def answer(ctx: Context) -> int:
        return 42

    return app


async def test_a_worker_paused_in_a_queue_claim_stalls_no_other_claim(
    postgres_schema: str,
) -> None:
    """While another worker holds a queue's claim lock, a worker still claims and runs
    everything else (its claim loop waits for that queue a bounded time, then moves
    on), and claims the queue's workflows once the lock is free."""
    client, worker = make_app(postgres_schema, worker=False), make_app(postgres_schema, worker=True)
    async with client:  # creates the schema
        await client.enqueue("answer", queue="jobs", workflow_id="queued")
    paused = await psycopg.AsyncConnection.connect(postgres_url())  # in a transaction
    try:
        await paused.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))",
            (f"durably-queue:{postgres_schema}:jobs",),
        )
        async with client, worker:
            await client.start("answer", workflow_id="unqueued")
            result = worker.handle("unqueued").result()
            assert await asyncio.wait_for(result, GUARD) == 42
            assert (await worker.get_workflow("queued")).status is WorkflowStatus.PENDING

            await paused.rollback()  # the paused worker goes on (or dies)
            assert await asyncio.wait_for(worker.handle("queued").result(), GUARD) == 42
    finally:
        await paused.close()


async def test_a_session_idle_in_a_transaction_is_ended_by_the_server(
    postgres_schema: str,
) -> None:
    """The store's connections tell the server to end a session left idle inside a
    transaction (a paused worker's), so its locks do not outlive a bounded pause."""
    store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=1)
    await store.open()
    try:
        setting = await store._run(
            lambda connection: _show(connection, "idle_in_transaction_session_timeout")
        )
    finally:
        await store.close()
    assert setting == "1min"


async def _show(connection: psycopg.AsyncConnection[dict[str, object]], name: str) -> str:
    cursor = await connection.execute(f"SHOW {name}")  # a constant name, not a value
    row = await cursor.fetchone()
    assert row is not None
    return str(row[name])

"""A worker paused inside one of its transactions (SIGSTOP, a frozen VM, a long GC
pause) must not stall the other workers. The paused worker is played by a connection
that takes a queue's claim lock, as a worker's queue claim does, and then waits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
from psycopg import sql
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


async def test_a_row_locked_by_a_paused_client_delays_no_other_lease_renewal(
    postgres_schema: str,
) -> None:
    """A client paused while it holds one workflow's row (in the middle of sending it a
    signal or cancelling it) must not stop the owner's heartbeat: the owner's other
    leases are renewed meanwhile (never left to expire and be claimed again), and the
    locked one once it is free."""
    gate = asyncio.Event()
    app = Durably(
        PostgresStore(postgres_url(), schema=postgres_schema, pool_size=4),
        lease_duration=timedelta(seconds=1.5),  # a heartbeat every 0.5 s
    )

    async def blocked() -> None:
        await gate.wait()

    @app.workflow(name="held")
    async def held(ctx: Context) -> None:
        await ctx.step("blocked", blocked)

    paused = await psycopg.AsyncConnection.connect(postgres_url())  # in a transaction
    try:
        async with app:
            try:
                for workflow_id in ("locked", "free"):
                    await app.start(held, workflow_id=workflow_id)
                await paused.execute(
                    sql.SQL(
                        "SELECT 1 FROM {} WHERE workflow_id = 'locked' FOR NO KEY UPDATE"
                    ).format(sql.Identifier(postgres_schema, "workflows"))
                )
                await asyncio.wait_for(renewed_twice(postgres_schema, "free"), GUARD)
                await paused.rollback()
                await asyncio.wait_for(renewed_twice(postgres_schema, "locked"), GUARD)
            finally:
                await paused.rollback()
                gate.set()
    finally:
        await paused.close()


async def lease(schema: str, workflow_id: str) -> tuple[int, int]:
    """The workflow's (fence, lease_until), read on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True) as reader:
        cursor = await reader.execute(
            sql.SQL("SELECT fence, lease_until FROM {} WHERE workflow_id = %s").format(
                sql.Identifier(schema, "workflows")
            ),
            (workflow_id,),
        )
        row = await cursor.fetchone()
    assert row is not None and row[1] is not None
    return int(row[0]), int(row[1])


async def renewed_twice(schema: str, workflow_id: str) -> None:
    """Return once the workflow's lease has been extended twice by its owner's
    heartbeat; fail if it was claimed again meanwhile (its fence moved: the lease had
    expired)."""
    fence, first = await lease(schema, workflow_id)
    extensions = [first]
    while len(extensions) < 3:
        await asyncio.sleep(0.05)
        now_fence, until = await lease(schema, workflow_id)
        assert now_fence == fence, f"the lease of {workflow_id!r} expired and it was claimed again"
        if until > extensions[-1]:
            extensions.append(until)

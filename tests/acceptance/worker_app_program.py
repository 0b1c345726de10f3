"""The app that ``durably worker worker_app_program:app`` serves in
``test_worker_processes.py``, configured by environment variables:

- ``DURABLY_WORKER_TEST_URL``: the PostgreSQL server (required);
- ``DURABLY_WORKER_TEST_SCHEMA``: the schema of the store and of the test's
  ``step_effects`` table (required);
- ``DURABLY_WORKER_TEST_EXECUTOR``: the worker's executor id (default: host:pid:random);
- ``DURABLY_WORKER_TEST_LEASE_SECONDS``: the lease duration (default 30);
- ``DURABLY_WORKER_TEST_GATES``: the directory where the test creates gate files;
- ``DURABLY_WORKER_TEST_CRON``: when set, the ``heartbeat`` schedule fires on it.

Every step records its side effect as a row of ``step_effects`` (workflow id, seq,
step name, pid), so the test can count how often each step body ran against the
step results the store recorded.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

import durably
from durably import Context, Durably
from durably.store.postgres import PostgresStore

#: How often a step blocked at a gate looks for its file.
GATE_POLL_SECONDS = 0.02


def make_app(
    url: str,
    schema: str,
    *,
    executor_id: str | None = None,
    lease_seconds: float = 30,
    gates: Path | None = None,
    cron: str | None = None,
    worker: bool = True,
) -> Durably:
    """The app every process of the test builds (the workers and the test's client)."""
    app = Durably(
        PostgresStore(url, schema=schema, pool_size=4),
        executor_id=executor_id,
        lease_duration=timedelta(seconds=lease_seconds),
        poll_interval=timedelta(milliseconds=200),
        worker=worker,
    )
    effects = sql.Identifier(schema, "step_effects")

    async def record_effect() -> int:
        """The side effect: one row per run of a step body; returns this pid."""
        step = durably.current_step()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            await connection.execute(
                sql.SQL(
                    "INSERT INTO {} (workflow_id, seq, step, pid) VALUES (%s, %s, %s, %s)"
                ).format(effects),
                (step.workflow_id, step.seq, step.name, os.getpid()),
            )
        return os.getpid()

    async def pass_gate(gate: str) -> int:
        """Block until the test creates the gate's file, then record the side effect."""
        if gates is None:
            raise RuntimeError("set DURABLY_WORKER_TEST_GATES to run gated workflows")
        # The test process creates the file: no asyncio.Event reaches across processes.
        while not (gates / gate).exists():  # noqa: ASYNC110
            await asyncio.sleep(GATE_POLL_SECONDS)
        return await record_effect()

    @app.workflow(name="gated")
    async def gated(ctx: Context, gate: str) -> list[int]:
        """Three steps; the middle one waits at ``gate``. Returns each step's pid."""
        before = await ctx.step("before", record_effect)
        through = await ctx.step("through_gate", pass_gate, gate)
        after = await ctx.step("after", record_effect)
        return [before, through, after]

    if cron is not None:

        @app.scheduled(cron, name="heartbeat", backfill=True)
        async def heartbeat(ctx: Context, tick: datetime) -> int:
            """One step per tick; returns the pid that ran it."""
            return await ctx.step("beat", record_effect)

    return app


def app_from_environment() -> Durably:
    """The worker's app, configured by the ``DURABLY_WORKER_TEST_*`` variables."""
    environ = os.environ
    gates = environ.get("DURABLY_WORKER_TEST_GATES")
    return make_app(
        environ["DURABLY_WORKER_TEST_URL"],
        environ["DURABLY_WORKER_TEST_SCHEMA"],
        executor_id=environ.get("DURABLY_WORKER_TEST_EXECUTOR"),
        lease_seconds=float(environ.get("DURABLY_WORKER_TEST_LEASE_SECONDS", "30")),
        gates=None if gates is None else Path(gates),
        cron=environ.get("DURABLY_WORKER_TEST_CRON"),
    )


def __getattr__(name: str) -> Durably:
    """``app`` is built on first access (``durably worker`` reads it), so that the
    test can import this module for :func:`make_app` without the variables set."""
    if name == "app":
        app = app_from_environment()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

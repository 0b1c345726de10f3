"""Connections of the PostgreSQL store: the pool, retries over a lost connection, and
the LISTEN connection that turns notifications into wake-ups.

A connection can die under any statement (the server restarts, an administrator runs
``pg_terminate_backend``). A statement that failed that way is retried on a new
connection, after a growing pause, when retrying cannot do harm: every statement of
the store is idempotent or fenced, except appending a signal without a dedup key,
which is therefore never retried (its caller gets the error and decides).

A transaction the server aborted to resolve a conflict (a deadlock, 40P01, or a
serialization failure, 40001) is retried in every case: it was rolled back whole, so
running it again cannot apply anything twice. (A unit of work that is not one
transaction must therefore not rely on ``retry=False`` across such an abort.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from durably.errors import StoreError
from durably.store.base import StoreChange

logger = logging.getLogger("durably.store.postgres")
T = TypeVar("T")

#: Sets how long the server lets a session sit idle inside a transaction before ending
#: it (every transaction of the store runs its statements back to back: a minute idle
#: means the process is paused or dead).
IDLE_IN_TRANSACTION_TIMEOUT = "SET idle_in_transaction_session_timeout = '1min'"
#: Attempts of a statement whose connection was lost, and the first pause between them.
RECONNECT_ATTEMPTS = 6
RECONNECT_PAUSE = 0.1
#: Attempts of a transaction the server aborted (deadlock, serialization failure), and
#: the longest first pause (random, so that the transactions that collided part ways).
CONFLICT_ATTEMPTS = 8
CONFLICT_PAUSE = 0.02


def is_connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means the connection (not the statement) failed."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, psycopg.OperationalError):
        return False
    sqlstate = getattr(error, "sqlstate", None)
    # 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 08xxx.
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def is_rolled_back_conflict(error: BaseException) -> bool:
    """Whether the server aborted (and rolled back) the transaction to resolve a
    conflict with another one: a deadlock (40P01) or a serialization failure (40001)."""
    return isinstance(error, psycopg.Error) and getattr(error, "sqlstate", None) in (
        "40P01",
        "40001",
    )


def make_pool(
    url: str, schema: str, *, max_size: int
) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    """An unopened pool of autocommit connections whose search_path is ``schema``."""

    async def configure(connection: AsyncConnection[DictRow]) -> None:
        await connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        # A process paused inside a transaction (SIGSTOP, a frozen VM) would keep its
        # locks, and stall the others, for as long as the pause: the server ends such
        # a session after a bounded idle time (the process reconnects when it resumes).
        await connection.execute(IDLE_IN_TRANSACTION_TIMEOUT)

    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=configure,
        connection_class=AsyncConnection[DictRow],
        timeout=10.0,
        reconnect_timeout=60.0,
    )


async def with_retries(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]],
    work: Callable[[AsyncConnection[DictRow]], Awaitable[T]],
    *,
    retry: bool,
    name: str,
) -> T:
    """Run ``work`` on a pooled connection; retry it on a new one if the connection
    was lost and ``retry`` allows, and in every case if the server aborted its
    transaction to resolve a deadlock or a serialization failure.

    Raises:
        StoreError: the database failed (the driver's error attached), or stayed
            unreachable through every attempt.
    """
    pause = RECONNECT_PAUSE
    conflicts = 0
    attempt = 1
    while True:
        try:
            async with pool.connection() as connection:
                result = await work(connection)
            _raise_if_cancelled(None)
            return result
        except (psycopg.Error, PoolTimeout) as error:
            _raise_if_cancelled(error)
            if is_rolled_back_conflict(error) and conflicts < CONFLICT_ATTEMPTS - 1:
                conflicts += 1
                logger.info("PostgreSQL store %s: %s; retrying the transaction", name, error)
                await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE * conflicts))
                continue
            lost = is_connection_lost(error)
            if not lost or not retry or attempt == RECONNECT_ATTEMPTS:
                what = "lost its connection" if lost else "failed"
                raise StoreError(f"PostgreSQL store {name} {what}: {error}") from error
            logger.warning(
                "PostgreSQL connection lost (%s); retrying in %.1fs (attempt %d of %d)",
                error,
                pause,
                attempt + 1,
                RECONNECT_ATTEMPTS,
            )
            await pool.check()  # drop dead connections now rather than one per statement
            await asyncio.sleep(pause)
            pause *= 2
            attempt += 1


def _raise_if_cancelled(error: BaseException | None) -> None:
    """Re-raise a cancellation of the calling task that psycopg swallowed.

    psycopg answers a cancelled await by cancelling the statement on the server and
    then returns its result (or raises QueryCanceled) instead of CancelledError; the
    caller's cancellation must win, or a task being stopped would go on running.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error


def parse_notification(payload: str) -> StoreChange:
    """A NOTIFY payload ('work', 'signal:<id>', 'cancel:<id>', 'workflow:<id>',
    'progress:<id>')."""
    kind, _, workflow_id = payload.partition(":")
    if kind not in ("work", "signal", "cancel", "workflow", "progress"):
        return StoreChange(kind="work", workflow_id=None)
    return StoreChange(kind=kind, workflow_id=workflow_id or None)  # type: ignore[arg-type]


async def listen(url: str, channel: str) -> AsyncGenerator[StoreChange, None]:
    """Notifications on ``channel``, forever, reconnecting after a lost connection.

    After every (re)connection a ``work`` change is yielded first: notifications sent
    while nobody listened are lost, so the consumer should look at the store.
    """
    pause = RECONNECT_PAUSE
    while True:
        try:
            connection = await AsyncConnection.connect(url, autocommit=True)
        except psycopg.Error as error:
            logger.warning("cannot LISTEN on PostgreSQL (%s); retrying in %.1fs", error, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
            continue
        try:
            await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            pause = RECONNECT_PAUSE  # listening again
            yield StoreChange(kind="work", workflow_id=None)
            async for notification in connection.notifies():
                yield parse_notification(notification.payload)
        except psycopg.Error as error:
            # A lost connection, or a LISTEN refused (a server in recovery after a
            # failover says "cannot execute LISTEN during recovery"): try again, less
            # often while it keeps failing; polling covers the gap.
            logger.warning("PostgreSQL LISTEN failed (%s); listening again in %.1fs", error, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
        finally:
            await connection.close()


def channel_name(schema: str) -> str:
    """The NOTIFY channel of a schema's store."""
    return f"durably:{schema}"


def describe(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable URL>"
    info.pop("password", None)
    return json.dumps({key: str(value) for key, value in sorted(info.items())})

"""PostgresStore: the store protocol on PostgreSQL, for many worker processes and machines.

Connections come from a pool and run in autocommit: most methods are ONE statement
(one round trip), and the few that need several run them in one transaction. Claims
use ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait for each other and
never claim the same workflow; every fenced write locks the workflow's row, so a
write by a previous owner either lands before a new claim or is refused after it.
Changes other processes care about are announced with NOTIFY (see :meth:`changes`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from durably.errors import ConfigurationError, StoreError
from durably.models import (
    PUBLISHED_KINDS,
    TERMINAL_STATUSES,
    AttemptRecord,
    Fence,
    History,
    OperationKind,
    OperationRecord,
    QueueLimits,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
    allowed_sources,
)
from durably.store import _rows
from durably.store._queries import load_queries
from durably.store._rules import (
    cancel_action,
    lease_lost,
    made_or_refused,
    queue_allowance,
    require_same_workflow,
    resume_target,
    workflow_finished,
    workflow_not_found,
)
from durably.store.base import StoreChange
from durably.store.postgres._connection import (
    channel_name,
    describe,
    listen,
    make_pool,
    with_retries,
)
from durably.store.postgres._group_commit import GroupCommitter
from durably.store.postgres._migrate import migrate, require_current

T = TypeVar("T")
Q = load_queries("durably.store.postgres")
Connection = AsyncConnection[DictRow]
logger = logging.getLogger("durably.store.postgres")

#: The longest a queue claim waits for another worker's claim of the same queue (the
#: ``lock_timeout`` of queries.sql's ``bound_lock_waits``).
QUEUE_LOCK_WAIT = "500 ms"

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _text_array(values: Collection[Any]) -> list[str]:
    return sorted({str(value) for value in values})


def _version_params(versions: Mapping[str, Sequence[str]] | None) -> dict[str, Any]:
    """The versions an executor runs as parallel arrays (one pair per element), all of
    them and the one it records per name (the first), so that a claim has the same
    parameters however many versions there are."""
    if versions is None:
        return dict.fromkeys(("version_names", "version_values", "current_names", "current_values"))
    pairs = sorted({(name, str(v)) for name, runs in versions.items() for v in runs})
    current = sorted((name, str(runs[0])) for name, runs in versions.items() if runs)
    return {
        "version_names": [name for name, _ in pairs],
        "version_values": [version for _, version in pairs],
        "current_names": [name for name, _ in current],
        "current_values": [version for _, version in current],
    }


class PostgresStore:
    """Workflows in a PostgreSQL database, shared by any number of worker processes.

    Args:
        url: A libpq connection URL (``postgresql://user@host:5432/database``).
        schema: The PostgreSQL schema holding durably's tables (created on open).
        pool_size: The most connections this store opens at once.
        migrate: ``False`` opens only a schema that holds this code's tables, and
            changes nothing otherwise: no schema, table or migration is ever made
            (what operator tools use, so that a mistyped schema or an app not upgraded
            yet is refused instead of changed).

    Raises:
        ConfigurationError: the schema name or pool size is not usable.
    """

    def __init__(
        self, url: str, *, schema: str = "durably", pool_size: int = 10, migrate: bool = True
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(
                f"schema must be a plain PostgreSQL identifier (letters, digits, _; at most "
                f"63 characters, not starting with a digit), not {schema!r}"
            )
        if pool_size < 1:
            raise ConfigurationError(f"pool_size must be at least 1, not {pool_size}")
        self.url = url
        self.schema = schema
        self.migrate = migrate
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._channel = channel_name(schema)
        self._opening = asyncio.Lock()
        # Computed once: every statement's error message names the store.
        self._name = f"PostgresStore({describe(url)}, schema={schema!r})"
        self._checkpoints = GroupCommitter(
            self._record_one, self._record_many, key=lambda p: (p["workflow_id"], p["seq"])
        )
        self._statuses = self._row_committer("set_workflow_status", "set_workflow_statuses")
        self._creations = self._row_committer("insert_workflow", "insert_workflows")

    def __repr__(self) -> str:
        return self._name

    def _row_committer(self, one: str, many: str) -> GroupCommitter[dict[str, Any] | None]:
        """Group commit of a statement ``one`` that writes one workflow's row and returns
        it (nothing when it wrote nothing), batched by ``many``, which takes every
        parameter but the channel as an array and returns the rows it wrote."""

        async def write_one(params: dict[str, Any]) -> dict[str, Any] | None:
            return await self._one(one, params)

        async def write_many(batch: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
            rows = await self._all(many, _as_arrays(batch, self._channel))
            written = {row["workflow_id"]: row for row in rows}
            return [written.get(params["workflow_id"]) for params in batch]

        return GroupCommitter(write_one, write_many, key=lambda params: params["workflow_id"])

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the schema or bring it up to date, and fill the pool (with
        ``migrate=False``: require this code's schema instead).

        Raises:
            ConfigurationError: ``migrate=False`` and the schema holds no durably tables.
            SchemaVersionError: the schema was written by a newer durably, or, with
                ``migrate=False``, an older one (untouched).
            StoreError: the server cannot be reached.
        """
        async with self._opening:
            if self._pool is not None:
                return
            try:
                async with await Connection.connect(self.url, autocommit=True) as connection:
                    connection.row_factory = psycopg.rows.dict_row
                    if self.migrate:
                        await migrate(connection, self.schema)
                    else:
                        await require_current(connection, self.schema, describe(self.url))
            except psycopg.Error as error:
                raise StoreError(
                    f"cannot open the PostgreSQL store at {describe(self.url)}: {error}"
                ) from error
            pool = make_pool(self.url, self.schema, max_size=self._pool_size)
            await pool.open()
            self._pool = pool

    async def close(self) -> None:
        """Close every connection (statements in progress finish first)."""
        async with self._opening:
            await self._checkpoints.flush()
            await self._statuses.flush()
            await self._creations.flush()
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    def changes(self) -> AsyncGenerator[StoreChange, None]:
        """Changes committed by any process, through LISTEN/NOTIFY (see
        :class:`~durably.store.ChangeFeed`)."""
        return listen(self.url, self._channel)

    async def _run(self, work: Callable[[Connection], Awaitable[T]], *, retry: bool = True) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError(f"the PostgreSQL store {self!r} is not open; await store.open() first")
        return await with_retries(pool, work, retry=retry, name=self._name)

    async def _one(self, query: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async def work(connection: Connection) -> dict[str, Any] | None:
            cursor = await connection.execute(Q[query], params)
            return await cursor.fetchone()

        return await self._run(work)

    async def _all(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async def work(connection: Connection) -> list[dict[str, Any]]:
            cursor = await connection.execute(Q[query], params)
            return await cursor.fetchall()

        return await self._run(work)

    async def _count(self, query: str, params: dict[str, Any]) -> int:
        async def work(connection: Connection) -> int:
            cursor = await connection.execute(Q[query], params)
            return cursor.rowcount

        return await self._run(work)

    # -- workflows -------------------------------------------------------------------

    async def create_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        """Insert ``record`` unless its id is taken (see :class:`~durably.store.Store`),
        group-committed with the workflows other callers create meanwhile."""
        params = {**_rows.workflow_params(record), "channel": self._channel}
        inserted = await self._creations.submit(params)
        if inserted is not None:
            return _rows.workflow_from_row(inserted), True
        existing = await self._one("get_workflow", params)
        if existing is None:  # deleted between the two statements
            raise StoreError(f"workflow {record.workflow_id!r} vanished while creating it")
        return _rows.workflow_from_row(existing), False

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow with this id, or None."""
        row = await self._one("get_workflow", {"workflow_id": workflow_id})
        return None if row is None else _rows.workflow_from_row(row)

    async def list_workflows(
        self,
        *,
        statuses: Collection[WorkflowStatus] | None = None,
        names: Collection[str] | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[WorkflowRecord]:
        """Workflows matching every filter, ordered by (created_at, workflow_id)."""
        params = {
            "statuses": None if statuses is None else [status.value for status in statuses],
            "names": None if names is None else _text_array(names),
            "created_after": created_after,
            "created_before": created_before,
            "limit": max(limit, 0),
            "offset": max(offset, 0),
        }
        query = "list_workflows_newest_first" if newest_first else "list_workflows_oldest_first"
        return [_rows.workflow_from_row(row) for row in await self._all(query, params)]

    async def count_workflows(self) -> dict[WorkflowStatus, int]:
        """The number of workflows in each status that has any."""
        rows = await self._all("count_workflows", {})
        return {WorkflowStatus(row["status"]): int(row["total"]) for row in rows}

    async def delete_workflow(self, workflow_id: str) -> bool:
        """Delete a workflow; its operations, attempts and signals cascade."""
        return await self._count("delete_workflow", {"workflow_id": workflow_id}) > 0

    async def purge_workflows(
        self, *, finished_before: int, statuses: Collection[WorkflowStatus]
    ) -> int:
        """Delete workflows in ``statuses`` that finished before ``finished_before``."""
        params = {
            "finished_before": finished_before,
            "statuses": [status.value for status in statuses],
        }
        return await self._count("purge_workflows", params)

    # -- ownership -------------------------------------------------------------------

    async def claim_workflow(
        self, workflow_id: str, *, owner: str, now: int, lease_until: int
    ) -> WorkflowRecord | None:
        """Claim the workflow if it is claimable; None otherwise (or when unknown)."""
        params = {
            "workflow_id": workflow_id,
            "owner": owner,
            "now": now,
            "lease_until": lease_until,
        }
        row = await self._one("claim_workflow", params)
        return None if row is None else _rows.workflow_from_row(row)

    async def claim_due_workflows(
        self,
        *,
        owner: str,
        names: Collection[str],
        now: int,
        lease_until: int,
        limit: int,
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> list[WorkflowRecord]:
        """Claim up to ``limit`` claimable workflows named in ``names`` (of a version
        in ``versions``), earliest due first, skipping rows locked by other workers;
        the list is in that order."""
        if limit <= 0 or not names:
            return []
        params = {
            **_version_params(versions),
            "owner": owner,
            "names": _text_array(names),
            "now": now,
            "lease_until": lease_until,
            "limit": limit,
        }
        rows = await self._all("claim_due_workflows", params)
        rows.sort(key=lambda row: (row["due_at"], row["created_at"], row["workflow_id"]))
        return [_rows.workflow_from_row(row) for row in rows]

    async def claim_queued_workflows(
        self,
        *,
        owner: str,
        queue: QueueLimits,
        names: Collection[str],
        now: int,
        lease_until: int,
        limit: int,
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> list[WorkflowRecord]:
        """Claim a queue's workflows within its limits (see
        :class:`~durably.store.Store`); a transaction-scoped advisory lock per queue
        serialises the claims of every worker, so their counts are never stale.

        The lock is waited for at most :data:`QUEUE_LOCK_WAIT`: a worker paused in the
        middle of its own claim (until the server ends its idle transaction) must not
        stop the others' claim loops; the queue is then skipped for this pass."""
        if limit <= 0 or not names:
            return []
        params = {
            **_version_params(versions),
            "owner": owner,
            "queue": queue.name,
            "names": _text_array(names),
            "now": now,
            "lease_until": lease_until,
            "window_start": now - queue.rate_period,
            "lock_name": f"durably-queue:{self.schema}:{queue.name}",
        }

        async def work(connection: Connection) -> list[dict[str, Any]]:
            try:
                return await claim(connection)
            except psycopg.errors.LockNotAvailable:
                logger.warning(
                    "queue %r: another worker has held its claim lock for more than %s "
                    "(paused in the middle of a claim?); skipping the queue this time",
                    queue.name,
                    QUEUE_LOCK_WAIT,
                )
                return []

        async def claim(connection: Connection) -> list[dict[str, Any]]:
            async with connection.transaction():
                await connection.execute(Q["bound_lock_waits"])
                await connection.execute(Q["lock_queue"], params)
                usage = await (await connection.execute(Q["queue_usage"], params)).fetchone()
                assert usage is not None  # an aggregate always has a row
                allowed = queue_allowance(
                    queue,
                    limit=limit,
                    running=usage["running"],
                    running_here=usage["running_here"],
                    started=usage["started"],
                )
                if allowed == 0:
                    return []
                query = Q["claim_queued_workflows"]
                cursor = await connection.execute(query, {**params, "limit": allowed})
                return await cursor.fetchall()

        rows = await self._run(work)
        rows.sort(
            key=lambda row: (-row["priority"], row["due_at"], row["created_at"], row["workflow_id"])
        )
        return [_rows.workflow_from_row(row) for row in rows]

    async def next_wake_time(
        self,
        *,
        names: Collection[str],
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> int | None:
        """The earliest timer of a suspended workflow named in ``names`` (of a version
        in ``versions``), or None."""
        params = {**_version_params(versions), "names": _text_array(names)}
        row = await self._one("next_wake_time", params)
        return None if row is None or row["wake_at"] is None else int(row["wake_at"])

    async def renew_leases(self, *, owner: str, now: int, lease_until: int) -> list[str]:
        """Extend every lease of ``owner`` and record its heartbeat, in one statement.

        Returns:
            The ids (sorted) of its workflows whose cancellation was requested.
        """
        rows = await self._all(
            "renew_leases", {"owner": owner, "now": now, "lease_until": lease_until}
        )
        return sorted(row["workflow_id"] for row in rows if row["cancel_requested"])

    async def release_workflows(self, *, owner: str) -> int:
        """Give up every lease of ``owner`` and tell the workers; return how many."""
        row = await self._one("release_workflows", {"owner": owner, "channel": self._channel})
        return 0 if row is None else int(row["released"])

    async def register_executor(
        self, *, executor_id: str, hostname: str, pid: int, now: int
    ) -> None:
        """Record a live executor (insert or replace)."""
        params = {"executor_id": executor_id, "hostname": hostname, "pid": pid, "now": now}
        await self._count("register_executor", params)

    async def list_executors(self) -> list[tuple[str, str, int, int]]:
        """Every registered executor, by id."""
        rows = await self._all("list_executors", {})
        return [
            (row["executor_id"], row["hostname"], int(row["pid"]), int(row["heartbeat_at"]))
            for row in rows
        ]

    async def remove_executor(self, *, executor_id: str, expire_leases: bool) -> int:
        """Forget an executor; with ``expire_leases`` release its workflows at once."""
        params = {"executor_id": executor_id, "owner": executor_id, "channel": self._channel}

        async def work(connection: Connection) -> int:
            async with connection.transaction():
                await connection.execute(Q["remove_executor"], params)
                if not expire_leases:
                    return 0
                cursor = await connection.execute(Q["expire_leases"], params)
                row = await cursor.fetchone()
                return 0 if row is None else int(row["released"])

        return await self._run(work)

    # -- history ---------------------------------------------------------------------

    async def load_history(self, workflow_id: str) -> History:
        """Every recorded operation and failed attempt, read in one snapshot."""
        row = await self._one("load_history", {"workflow_id": workflow_id})
        assert row is not None  # an aggregate: always one row
        by_seq: dict[int, list[AttemptRecord]] = {}
        for attempt in row["attempts"]:
            by_seq.setdefault(attempt["seq"], []).append(_rows.attempt_from_row(attempt))
        return History(
            operations={
                operation["seq"]: _rows.operation_from_row(operation)
                for operation in row["operations"]
            },
            attempts=by_seq,
        )

    async def list_operations(
        self,
        workflow_id: str,
        *,
        kinds: Collection[OperationKind],
        name: str | None = None,
        after_seq: int = -1,
    ) -> list[OperationRecord]:
        """Operations of ``kinds`` (named ``name`` unless None) after ``after_seq``, by seq."""
        params = {
            "workflow_id": workflow_id,
            "kinds": _text_array([kind.value for kind in kinds]),
            "name": name,
            "after_seq": after_seq,
        }
        rows = await self._all("list_operations", params)
        return [_rows.operation_from_row(row) for row in rows]

    async def record_operation(self, fence: Fence, operation: OperationRecord) -> None:
        """Insert or replace the operation at its seq, fenced, in one statement,
        group-committed with the checkpoints of other workflows written meanwhile."""
        require_same_workflow(fence, operation.workflow_id)
        if not await self._checkpoints.submit(_operation_params(fence, operation, self._channel)):
            raise lease_lost(fence)

    async def _record_one(self, params: dict[str, Any]) -> bool:
        return await self._one("record_operation", params) is not None

    async def _record_many(self, batch: list[dict[str, Any]]) -> list[bool]:
        rows = await self._all("record_operations", _as_arrays(batch, self._channel))
        held = {(row["workflow_id"], row["seq"]) for row in rows}
        return [(params["workflow_id"], params["seq"]) in held for params in batch]

    async def record_attempt(self, fence: Fence, attempt: AttemptRecord) -> None:
        """Insert (or replace, same key) a failed attempt, fenced."""
        require_same_workflow(fence, attempt.workflow_id)
        if await self._one("record_attempt", _rows.attempt_params(fence, attempt)) is None:
            raise lease_lost(fence)

    # -- status ----------------------------------------------------------------------

    async def set_workflow_status(
        self,
        fence: Fence,
        status: WorkflowStatus,
        *,
        now: int,
        result: str | None = None,
        error: str | None = None,
    ) -> WorkflowRecord:
        """Compare-and-set the status, fenced (see :class:`~durably.store.Store`),
        group-committed with the status changes of other workflows made meanwhile."""
        params = {
            **_rows.fence_params(fence),
            "status": status.value,
            "sources": ",".join(sorted({*allowed_sources(status), status})),
            "now": now,
            "result": result,
            "error": error,
            "releases": status.is_terminal or status is WorkflowStatus.PARKED,
            "finishes": status.is_terminal,
            "channel": self._channel,
        }
        row = await self._statuses.submit(params)
        if row is None:
            # Refused, or made by this very change whose first reply was lost: read
            # which (only on this rare path; a refusal is final, since a fence never
            # comes back).
            return await self._run(lambda connection: _made_or_refused(connection, fence, status))
        return _rows.workflow_from_row(row)

    async def suspend_workflow(
        self,
        fence: Fence,
        *,
        now: int,
        wake_at: int | None,
        wait_reason: str,
        waiting_for_signal: str | None = None,
    ) -> WorkflowRecord:
        """RUNNING to SUSPENDED, releasing ownership, fenced; due at once when the
        awaited signal is already in the inbox or a cancellation was requested."""
        params = {
            **_rows.fence_params(fence),
            "now": now,
            "wake_at": wake_at,
            "wait_reason": wait_reason,
            "signal": waiting_for_signal,
        }

        async def work(connection: Connection) -> WorkflowRecord:
            row = await (await connection.execute(Q["suspend_workflow"], params)).fetchone()
            if row is None:
                return await _made_or_refused(connection, fence, WorkflowStatus.SUSPENDED)
            if waiting_for_signal is not None and row["wake_at"] != now:
                # A signal appended while this statement waited for the row's lock is
                # not in its snapshot (under READ COMMITTED it re-read the row, not the
                # signals): a second statement, with a snapshot of its own, looks.
                woken = await connection.execute(Q["wake_for_waiting_signal"], params)
                row = await woken.fetchone() or row
            return _rows.workflow_from_row(row)

        return await self._run(work)

    async def request_cancel(
        self, workflow_id: str, *, compensate: bool, now: int
    ) -> WorkflowRecord:
        """Record a cancellation request (see :class:`~durably.store.Store`); the owner,
        wherever it runs, is told at once."""
        params = {
            "workflow_id": workflow_id,
            "compensate": int(compensate),
            "now": now,
            "channel": self._channel,
        }

        async def work(connection: Connection) -> WorkflowRecord:
            async with connection.transaction():
                row = await (await connection.execute(Q["lock_workflow"], params)).fetchone()
                if row is None:
                    raise workflow_not_found(workflow_id)
                record = _rows.workflow_from_row(row)
                query = cancel_action(record, compensate=compensate, now=now)
                if query is None:
                    return record
                changed = await (await connection.execute(Q[query], params)).fetchone()
                assert changed is not None  # the row is locked
                return _rows.workflow_from_row(changed)

        return await self._run(work)

    async def resume_workflow(self, workflow_id: str, *, now: int) -> WorkflowRecord:
        """The operator's resume (see :class:`~durably.store.Store`)."""

        async def work(connection: Connection) -> WorkflowRecord:
            async with connection.transaction():
                locked = {"workflow_id": workflow_id}
                row = await (await connection.execute(Q["lock_workflow"], locked)).fetchone()
                if row is None:
                    raise workflow_not_found(workflow_id)
                record = _rows.workflow_from_row(row)
                params = {
                    **_rows.resume_params(record, resume_target(record), now),
                    "channel": self._channel,
                }
                if record.status is not WorkflowStatus.PARKED:
                    await connection.execute(Q["delete_failed_attempts"], params)
                    await connection.execute(Q["delete_failed_operations"], params)
                resumed = await (await connection.execute(Q["resume_workflow"], params)).fetchone()
                assert resumed is not None  # the row is locked
                return _rows.workflow_from_row(resumed)

        return await self._run(work)

    # -- signals ---------------------------------------------------------------------

    async def append_signal(
        self,
        workflow_id: str,
        name: str,
        payload: str | None,
        *,
        serializer: str,
        dedup_key: str | None,
        now: int,
    ) -> tuple[SignalRecord, bool]:
        """Append to the inbox and wake the workflow if it is suspended (see
        :meth:`MemoryStore.append_signal <durably.store.MemoryStore.append_signal>`)."""
        params = {
            "workflow_id": workflow_id,
            "name": name,
            "payload": payload,
            "serializer": serializer,
            "dedup_key": dedup_key,
            "now": now,
            "channel": self._channel,
            "terminal": _TERMINAL,
        }

        async def work(connection: Connection) -> tuple[SignalRecord, bool]:
            row = await (await connection.execute(Q["append_signal"], params)).fetchone()
            if row is None:
                raise workflow_not_found(workflow_id)
            if row["signal_id"] is not None:
                return _rows.signal_from_row(row), True
            if dedup_key is not None:
                # A key used already is a quiet duplicate, even once the workflow ended
                # (ON CONFLICT waited for a conflicting append to commit: it is visible).
                existing = await (
                    await connection.execute(Q["find_signal_by_dedup_key"], params)
                ).fetchone()
                if existing is not None:
                    return _rows.signal_from_row(existing), False
            status = WorkflowStatus(row["workflow_status"])
            assert status.is_terminal  # a live workflow refuses only a key used already
            raise workflow_finished(workflow_id, status, f"send it signal {name!r}")

        # Without a dedup key a retried append could deliver the signal twice.
        return await self._run(work, retry=dedup_key is not None)

    async def consume_signal(self, fence: Fence, operation: OperationRecord) -> SignalRecord | None:
        """Consume the oldest unconsumed signal named ``operation.name`` and record
        the operation with its payload, fenced, in one transaction; None (and no
        write) when there is none. The statement is retried when its connection is
        lost, perhaps after it committed: a signal consumed at ``operation.seq``
        already is returned again, and no other is consumed."""
        require_same_workflow(fence, operation.workflow_id)
        params = {
            **_operation_params(fence, operation, self._channel),
            **_rows.consume_params(fence, operation),
        }
        row = await self._one("consume_signal", params)
        assert row is not None  # always one row
        if not row["owned"]:
            raise lease_lost(fence)
        return None if row["signal_id"] is None else _rows.signal_from_row(row)

    async def list_signals(self, workflow_id: str) -> list[SignalRecord]:
        """The inbox, consumed or not, oldest first."""
        rows = await self._all("list_signals", {"workflow_id": workflow_id})
        return [_rows.signal_from_row(row) for row in rows]


#: The statuses a signal is refused in, as the append statement takes them.
_TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)


def _as_arrays(batch: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    """The parameters of a batched statement: each parameter of the writes in ``batch``
    (which all have the same ones) as an array, in batch order, but the channel."""
    return {
        **{key: [params[key] for params in batch] for key in batch[0] if key != "channel"},
        "channel": channel,
    }


def _operation_params(fence: Fence, operation: OperationRecord, channel: str) -> dict[str, Any]:
    moment = operation.started_at if operation.finished_at is None else operation.finished_at
    return {
        **_rows.operation_params(fence, operation),
        "moment": moment,
        "channel": channel,
        "announce": operation.kind in PUBLISHED_KINDS,
    }


async def _made_or_refused(
    connection: Connection, fence: Fence, wanted: WorkflowStatus
) -> WorkflowRecord:
    """See :func:`made_or_refused` (the row is read only on this rare path)."""
    cursor = await connection.execute(Q["get_workflow"], {"workflow_id": fence.workflow_id})
    row = await cursor.fetchone()
    return made_or_refused(None if row is None else _rows.workflow_from_row(row), fence, wanted)

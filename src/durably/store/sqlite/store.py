"""SqliteStore: the store protocol over the standard library's sqlite3.

One file in WAL mode. Writes go through a single writer that group-commits
(``_writer.py``); reads use their own connection. Timestamps are
integer UTC epoch microseconds; every query is a named, parameterised statement from
``queries.sql``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from durably.errors import (
    ConfigurationError,
    LeaseLostError,
    StoreError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
)
from durably.models import (
    TERMINAL_STATUSES,
    AttemptRecord,
    Fence,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
    allowed_sources,
)
from durably.store._queries import load_queries
from durably.store.sqlite._migrate import check_version, migrate
from durably.store.sqlite._writer import SqliteWriter

T = TypeVar("T")
Q = load_queries("durably.store.sqlite")
SYNCHRONOUS_LEVELS = ("NORMAL", "FULL")


class SqliteStore:
    """Workflows in one SQLite file.

    Args:
        path: The database file (created with mode 0600 if missing).
        synchronous: ``"NORMAL"`` (default: survives process crashes) or ``"FULL"``
            (also survives power loss, slower).
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if str(path) in ("", ":memory:"):
            raise ConfigurationError(
                "SqliteStore needs a file (its writer and readers share it): use "
                "MemoryStore() for an in-memory store, or a temporary file"
            )
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ConfigurationError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = level
        self._writer: SqliteWriter | None = None
        self._reader: sqlite3.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA busy_timeout = 5000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {self.synchronous}")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA temp_store = MEMORY")
        connection.execute("PRAGMA cache_size = -8000")
        return connection

    def _create_file(self) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        os.close(descriptor)

    def _open_sync(self) -> None:
        self._create_file()
        plain = sqlite3.connect(self.path, isolation_level=None)
        try:
            check_version(plain)
        finally:
            plain.close()
        connection = self._connect()
        try:
            migrate(connection)
        finally:
            connection.close()

    async def open(self) -> None:
        """Create the file (0600) if needed, migrate, start the writer and reader."""
        if self._writer is not None:
            return
        try:
            await asyncio.to_thread(self._open_sync)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open SQLite database {self.path}: {error}") from error
        writer = SqliteWriter(self._connect)
        writer.start()
        self._writer = writer
        self._reader = self._connect()

    async def close(self) -> None:
        """Finish pending writes and close every connection."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if reader is not None:
            reader.close()

    @property
    def writer(self) -> SqliteWriter:
        """The writer (its counters show group commit at work)."""
        if self._writer is None:
            raise StoreError("the SQLite store is not open; await store.open() first")
        return self._writer

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.submit(work)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Reads run on the loop thread: in WAL mode they never wait for writers, and a
        # thread hop would cost ten times the read itself.
        if self._reader is None:
            raise StoreError("the SQLite store is not open; await store.open() first")
        try:
            return work(self._reader)
        except sqlite3.Error as error:
            raise StoreError(f"SQLite read failed: {error}") from error

    # -- workflows -------------------------------------------------------------------

    async def create_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        """Insert unless the id exists."""

        def work(connection: sqlite3.Connection) -> tuple[WorkflowRecord, bool]:
            inserted = connection.execute(Q["insert_workflow"], _workflow_params(record)).rowcount
            if inserted:
                return record, True
            row = connection.execute(
                Q["get_workflow"], {"workflow_id": record.workflow_id}
            ).fetchone()
            return _workflow(row), False

        return await self._write(work)

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow or None."""
        row = await self._read(
            lambda c: c.execute(Q["get_workflow"], {"workflow_id": workflow_id}).fetchone()
        )
        return None if row is None else _workflow(row)

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
        """Filtered workflows ordered by creation."""
        params = {
            "statuses": None if statuses is None else json.dumps([str(s) for s in statuses]),
            "names": None if names is None else json.dumps(list(names)),
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "offset": offset,
        }
        query = Q["list_workflows_newest_first" if newest_first else "list_workflows_oldest_first"]
        rows = await self._read(lambda c: c.execute(query, params).fetchall())
        return [_workflow(row) for row in rows]

    async def count_workflows(self) -> dict[WorkflowStatus, int]:
        """Counts per status."""
        rows = await self._read(lambda c: c.execute(Q["count_workflows"]).fetchall())
        return {WorkflowStatus(row["status"]): row["total"] for row in rows}

    async def delete_workflow(self, workflow_id: str) -> bool:
        """Delete a workflow and its rows."""
        return await self._write(
            lambda c: c.execute(Q["delete_workflow"], {"workflow_id": workflow_id}).rowcount > 0
        )

    async def purge_workflows(
        self, *, finished_before: int, statuses: Collection[WorkflowStatus]
    ) -> int:
        """Delete old finished workflows."""
        params = {
            "finished_before": finished_before,
            "statuses": json.dumps([str(s) for s in statuses]),
        }
        return await self._write(lambda c: c.execute(Q["purge_workflows"], params).rowcount)

    # -- ownership -------------------------------------------------------------------

    async def claim_workflow(
        self, workflow_id: str, *, owner: str, now: int, lease_until: int
    ) -> WorkflowRecord | None:
        """Claim one workflow if claimable."""
        params = {
            "workflow_id": workflow_id,
            "owner": owner,
            "now": now,
            "lease_until": lease_until,
        }
        row = await self._write(lambda c: c.execute(Q["claim_workflow"], params).fetchone())
        return None if row is None else _workflow(row)

    async def claim_due_workflows(
        self,
        *,
        owner: str,
        names: Collection[str],
        now: int,
        lease_until: int,
        limit: int,
    ) -> list[WorkflowRecord]:
        """Claim up to ``limit`` claimable workflows."""
        params = {
            "owner": owner,
            "names": json.dumps(list(names)),
            "now": now,
            "lease_until": lease_until,
            "limit": limit,
        }
        rows = await self._write(lambda c: c.execute(Q["claim_due_workflows"], params).fetchall())
        records = [_workflow(row) for row in rows]
        records.sort(key=lambda r: (r.created_at, r.workflow_id))
        return records

    async def next_wake_time(self, *, names: Collection[str]) -> int | None:
        """Earliest timer of a suspended workflow."""
        params = {"names": json.dumps(list(names))}
        row = await self._read(lambda c: c.execute(Q["next_wake_time"], params).fetchone())
        return None if row is None else row["wake_at"]

    async def renew_leases(self, *, owner: str, now: int, lease_until: int) -> list[str]:
        """Extend the owner's leases; return ids with a pending cancellation."""

        def work(connection: sqlite3.Connection) -> list[str]:
            connection.execute(Q["renew_leases"], {"owner": owner, "lease_until": lease_until})
            connection.execute(Q["touch_executor"], {"owner": owner, "now": now})
            rows = connection.execute(Q["cancelled_workflows_of_owner"], {"owner": owner})
            return [row["workflow_id"] for row in rows]

        return await self._write(work)

    async def release_workflows(self, *, owner: str) -> int:
        """Give up every lease of ``owner``."""
        return await self._write(
            lambda c: c.execute(Q["release_workflows"], {"owner": owner}).rowcount
        )

    async def register_executor(
        self, *, executor_id: str, hostname: str, pid: int, now: int
    ) -> None:
        """Record a live executor."""
        params = {"executor_id": executor_id, "hostname": hostname, "pid": pid, "now": now}
        await self._write(lambda c: c.execute(Q["register_executor"], params))

    async def list_executors(self) -> list[tuple[str, str, int, int]]:
        """Every registered executor."""
        rows = await self._read(lambda c: c.execute(Q["list_executors"]).fetchall())
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def remove_executor(self, *, executor_id: str, expire_leases: bool) -> int:
        """Forget an executor, optionally freeing its workflows."""

        def work(connection: sqlite3.Connection) -> int:
            connection.execute(Q["remove_executor"], {"executor_id": executor_id})
            if not expire_leases:
                return 0
            return connection.execute(Q["release_workflows"], {"owner": executor_id}).rowcount

        return await self._write(work)

    # -- history ---------------------------------------------------------------------

    async def load_history(self, workflow_id: str) -> History:
        """Every recorded operation and failed attempt."""

        def work(connection: sqlite3.Connection) -> History:
            params = {"workflow_id": workflow_id}
            operations = {
                row["seq"]: _operation(row)
                for row in connection.execute(Q["load_operations"], params)
            }
            attempts: dict[int, list[AttemptRecord]] = {}
            for row in connection.execute(Q["load_attempts"], params):
                attempts.setdefault(row["seq"], []).append(_attempt(row))
            return History(operations=operations, attempts=attempts)

        return await self._read(work)

    async def record_operation(self, fence: Fence, operation: OperationRecord) -> None:
        """Insert or replace an operation, fenced."""
        params = _operation_params(operation)
        fence_params = _fence_params(fence, operation.finished_at or operation.started_at)

        def work(connection: sqlite3.Connection) -> None:
            if not connection.execute(Q["fence_and_touch"], fence_params).rowcount:
                raise _lease_lost(fence)
            connection.execute(Q["upsert_operation"], params)

        await self._write(work)

    async def record_attempt(self, fence: Fence, attempt: AttemptRecord) -> None:
        """Insert a failed attempt, fenced."""
        params = _fields(attempt)
        fence_params = _fence_params(fence, attempt.finished_at)

        def work(connection: sqlite3.Connection) -> None:
            if not connection.execute(Q["fence_and_touch"], fence_params).rowcount:
                raise _lease_lost(fence)
            connection.execute(Q["upsert_attempt"], params)

        await self._write(work)

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
        """Compare-and-set the status, fenced."""
        sources = {*allowed_sources(status), status}
        params = {
            "workflow_id": fence.workflow_id,
            "owner": fence.owner,
            "fence": fence.fence,
            "status": str(status),
            "now": now,
            "result": result,
            "error": error,
            "releases": status in TERMINAL_STATUSES or status is WorkflowStatus.PARKED,
            "is_terminal": status in TERMINAL_STATUSES,
            "sources": json.dumps([str(s) for s in sources]),
        }

        def work(connection: sqlite3.Connection) -> WorkflowRecord:
            row = connection.execute(Q["set_workflow_status"], params).fetchone()
            if row is None:
                raise _lease_lost(fence, f"or it cannot move to {status}")
            return _workflow(row)

        return await self._write(work)

    async def suspend_workflow(
        self,
        fence: Fence,
        *,
        now: int,
        wake_at: int | None,
        wait_reason: str,
        waiting_for_signal: str | None = None,
    ) -> WorkflowRecord:
        """RUNNING -> SUSPENDED, releasing ownership."""
        params = {
            "workflow_id": fence.workflow_id,
            "owner": fence.owner,
            "fence": fence.fence,
            "now": now,
            "wake_at": wake_at,
            "wait_reason": wait_reason,
            "signal": waiting_for_signal,
        }

        def work(connection: sqlite3.Connection) -> WorkflowRecord:
            row = connection.execute(Q["suspend_workflow"], params).fetchone()
            if row is None:
                raise _lease_lost(fence, "or it is not RUNNING")
            return _workflow(row)

        return await self._write(work)

    async def request_cancel(
        self, workflow_id: str, *, compensate: bool, now: int
    ) -> WorkflowRecord:
        """Record a cancellation request."""

        def work(connection: sqlite3.Connection) -> WorkflowRecord:
            params: dict[str, Any] = {"workflow_id": workflow_id, "now": now}
            row = connection.execute(Q["get_workflow"], params).fetchone()
            if row is None:
                raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
            record = _workflow(row)
            if record.status is WorkflowStatus.CANCELLED:
                return record
            if record.status in TERMINAL_STATUSES:
                raise WorkflowFinishedError(
                    f"workflow {workflow_id!r} already ended {record.status}; nothing to cancel"
                )
            row = connection.execute(
                Q["request_cancel"], {**params, "compensate": int(compensate)}
            ).fetchone()
            unowned = record.owner is None or (record.lease_until or 0) < now
            if unowned and record.status in (
                WorkflowStatus.PENDING,
                WorkflowStatus.SUSPENDED,
                WorkflowStatus.PARKED,
            ):
                if compensate and record.status is not WorkflowStatus.PENDING:
                    row = connection.execute(Q["wake_for_compensation"], params).fetchone()
                else:
                    row = connection.execute(Q["cancel_unowned"], params).fetchone()
            return _workflow(row)

        return await self._write(work)

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
        """Append to the inbox and wake a suspended workflow."""

        def work(connection: sqlite3.Connection) -> tuple[SignalRecord, bool]:
            params: dict[str, Any] = {"workflow_id": workflow_id, "now": now}
            row = connection.execute(Q["get_workflow"], params).fetchone()
            if row is None:
                raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
            status = WorkflowStatus(row["status"])
            if status in TERMINAL_STATUSES:
                raise WorkflowFinishedError(
                    f"workflow {workflow_id!r} already ended {status}; it cannot receive "
                    f"signal {name!r}"
                )
            if dedup_key is not None:
                existing = connection.execute(
                    Q["find_signal_by_dedup_key"], {**params, "dedup_key": dedup_key}
                ).fetchone()
                if existing is not None:
                    return _signal(existing), False
            inserted = connection.execute(
                Q["insert_signal"],
                {
                    **params,
                    "name": name,
                    "payload": payload,
                    "serializer": serializer,
                    "dedup_key": dedup_key,
                },
            ).fetchone()
            connection.execute(Q["wake_suspended"], params)
            return _signal(inserted), True

        return await self._write(work)

    async def consume_signal(self, fence: Fence, operation: OperationRecord) -> SignalRecord | None:
        """Consume the oldest matching signal and record the operation, atomically."""
        fence_params = _fence_params(fence, operation.finished_at or operation.started_at)

        def work(connection: sqlite3.Connection) -> SignalRecord | None:
            signal = connection.execute(
                Q["oldest_unconsumed_signal"],
                {"workflow_id": fence.workflow_id, "name": operation.name},
            ).fetchone()
            if signal is None:
                owned = connection.execute(
                    "SELECT 1 FROM workflows WHERE workflow_id = :workflow_id "
                    "AND owner = :owner AND fence = :fence",
                    fence_params,
                ).fetchone()
                if owned is None:
                    raise _lease_lost(fence)
                return None
            if not connection.execute(Q["fence_and_touch"], fence_params).rowcount:
                raise _lease_lost(fence)
            consumed = connection.execute(
                Q["mark_signal_consumed"],
                {
                    "signal_id": signal["signal_id"],
                    "seq": operation.seq,
                    "now": operation.finished_at,
                },
            ).fetchone()
            recorded = dataclasses.replace(
                operation,
                status=OperationStatus.COMPLETED,
                result=signal["payload"],
                serializer=signal["serializer"],
            )
            connection.execute(Q["upsert_operation"], _operation_params(recorded))
            return _signal(consumed)

        return await self._write(work)

    async def list_signals(self, workflow_id: str) -> list[SignalRecord]:
        """The inbox, oldest first."""
        rows = await self._read(
            lambda c: c.execute(Q["list_signals"], {"workflow_id": workflow_id}).fetchall()
        )
        return [_signal(row) for row in rows]


def _lease_lost(fence: Fence, detail: str = "") -> LeaseLostError:
    suffix = f" ({detail})" if detail else ""
    return LeaseLostError(
        f"workflow {fence.workflow_id!r} is no longer owned by {fence.owner!r} "
        f"(fence {fence.fence}): another executor took it over{suffix}"
    )


def _fence_params(fence: Fence, moment: int) -> dict[str, Any]:
    return {
        "workflow_id": fence.workflow_id,
        "owner": fence.owner,
        "fence": fence.fence,
        "moment": moment,
    }


def _fields(record: Any) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value; records hold only immutable values.
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


def _workflow_params(record: WorkflowRecord) -> dict[str, Any]:
    params = _fields(record)
    params["status"] = str(record.status)
    params["cancel_requested"] = int(record.cancel_requested)
    params["compensate_on_cancel"] = int(record.compensate_on_cancel)
    return params


def _operation_params(operation: OperationRecord) -> dict[str, Any]:
    params = _fields(operation)
    params["kind"] = str(operation.kind)
    params["status"] = str(operation.status)
    return params


def _workflow(row: sqlite3.Row) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=row["workflow_id"],
        workflow_name=row["workflow_name"],
        status=WorkflowStatus(row["status"]),
        version=row["version"],
        input=row["input"],
        result=row["result"],
        error=row["error"],
        serializer=row["serializer"],
        owner=row["owner"],
        fence=row["fence"],
        lease_until=row["lease_until"],
        wake_at=row["wake_at"],
        deadline_at=row["deadline_at"],
        wait_reason=row["wait_reason"],
        cancel_requested=bool(row["cancel_requested"]),
        compensate_on_cancel=bool(row["compensate_on_cancel"]),
        recovery_attempts=row["recovery_attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


def _operation(row: sqlite3.Row) -> OperationRecord:
    return OperationRecord(
        workflow_id=row["workflow_id"],
        seq=row["seq"],
        kind=OperationKind(row["kind"]),
        name=row["name"],
        status=OperationStatus(row["status"]),
        result=row["result"],
        error=row["error"],
        serializer=row["serializer"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        wake_at=row["wake_at"],
    )


def _attempt(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        workflow_id=row["workflow_id"],
        seq=row["seq"],
        attempt=row["attempt"],
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        next_attempt_at=row["next_attempt_at"],
    )


def _signal(row: sqlite3.Row) -> SignalRecord:
    return SignalRecord(
        signal_id=row["signal_id"],
        workflow_id=row["workflow_id"],
        name=row["name"],
        payload=row["payload"],
        serializer=row["serializer"],
        dedup_key=row["dedup_key"],
        created_at=row["created_at"],
        consumed_seq=row["consumed_seq"],
        consumed_at=row["consumed_at"],
    )

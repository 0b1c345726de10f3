"""SqliteStore: the store protocol on one SQLite file, with the standard library only.

The file is in WAL mode. Every write goes through one writer thread that commits the
writes of many workflows together (``_writer.py``); reads use a second connection on
its own thread (``_reader.py``). Each method is one small transaction made of named,
parameterised statements from ``queries.sql``. Several processes may share the file:
SQLite's write lock (taken by ``BEGIN IMMEDIATE``) serialises their claims, so two of
them never claim the same workflow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from durably.errors import ConfigurationError, StoreError
from durably.models import (
    AttemptRecord,
    Fence,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
    QueueLimits,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
    allowed_sources,
)
from durably.store import _rows
from durably.store._queries import NullTail, load_queries
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
from durably.store.sqlite._connect import (
    SYNCHRONOUS_PRAGMAS,
    connect,
    connect_and_migrate,
)
from durably.store.sqlite._migrate import require_current
from durably.store.sqlite._reader import SqliteReader
from durably.store.sqlite._writer import SqliteWriter

T = TypeVar("T")
Q = load_queries("durably.store.sqlite")
#: The checkpoint, bound by position (the hot path). A completed step's ``error`` and
#: ``wake_at`` (the last two values) are None: written as NULL literals, because
#: binding two Nones costs about 6,800 instructions, 4% of a sequential step (see
#: :func:`~durably.store._queries.with_nulls`).
_RECORD_OPERATION = NullTail(Q["record_operation"], _rows.OPERATION_PARAMS, 2)
#: insert_workflow, bound by position; a workflow as the engine starts it leaves the
#: last :data:`_rows.UNSET_AT_START` values None (a None costs about 3,400
#: instructions to bind).
_INSERT_WORKFLOW = NullTail(Q["insert_workflow"], _rows.WORKFLOW_PARAMS, _rows.UNSET_AT_START)
#: How many source statuses set_workflow_status compares the current status with.
_SOURCE_SLOTS = 5


def _source_values(status: WorkflowStatus) -> tuple[str, ...]:
    """The ``source_N`` parameters of set_workflow_status for a move to ``status``: the
    statuses it may come from, and itself (setting it again is allowed), the last one
    repeated to fill every slot."""
    sources = sorted({*allowed_sources(status), status})
    if len(sources) > _SOURCE_SLOTS:
        raise RuntimeError(
            f"{len(sources)} statuses may move to {status.value}, more than the "
            f"{_SOURCE_SLOTS} that set_workflow_status compares: add slots to the query"
        )
    sources += sources[-1:] * (_SOURCE_SLOTS - len(sources))
    return tuple(source.value for source in sources)


_SOURCES = {status: _source_values(status) for status in WorkflowStatus}
#: set_workflow_status, bound by position; and with ``error`` (last, usually None)
#: written as a NULL literal.
_SET_STATUS_PARAMS = (
    "workflow_id",
    "owner",
    "fence",
    "status",
    *(f"source_{slot}" for slot in range(1, _SOURCE_SLOTS + 1)),
    "now",
    "releases",
    "finishes",
    "result",
    "error",
)
#: ``error`` (last) is usually None.
_SET_STATUS = NullTail(Q["set_workflow_status"], _SET_STATUS_PARAMS, 1)


def _json_list(values: Collection[str]) -> str:
    """A collection bound as one parameter, read in SQL with json_each."""
    return json.dumps(sorted({str(value) for value in values}))


def _connect_existing(path: Path, synchronous: str) -> sqlite3.Connection:
    """The writer's connection of a store that must not migrate: only to an existing
    file that holds this code's schema, checked before anything is written (the WAL
    pragma of :func:`connect` rewrites the file's header).

    Raises:
        ConfigurationError: no such file, or a file without durably's tables.
        SchemaVersionError: an older or newer schema.
    """
    where = str(path.resolve())
    if not path.is_file():
        raise ConfigurationError(
            f"no database file at {where}: a store opened without migrating never creates "
            f"one; check the path"
        )
    # mode=rw: never create the file, even if it disappears after the check above.
    probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
    try:
        require_current(probe, where)
    except sqlite3.DatabaseError as error:
        if error.sqlite_errorcode != sqlite3.SQLITE_NOTADB:
            raise
        raise ConfigurationError(
            f"{where} is not a SQLite database ({error}); check the path. The file was not changed."
        ) from error
    finally:
        probe.close()
    return connect(path, synchronous)


def _version_params(versions: Mapping[str, Sequence[str]] | None) -> dict[str, str | None]:
    """The versions an executor runs as JSON parameters of [name, version] pairs: all
    of them, and the one it records per name (the first)."""
    if versions is None:
        return {"versions": None, "current_versions": None}
    pairs = sorted({(name, str(v)) for name, runs in versions.items() for v in runs})
    current = sorted((name, str(runs[0])) for name, runs in versions.items() if runs)
    return {"versions": json.dumps(pairs), "current_versions": json.dumps(current)}


class SqliteStore:
    """Workflows in one SQLite file, shared safely by threads and processes.

    Args:
        path: The database file. It is created (mode 0600, with its directory) when
            missing. ``":memory:"`` is refused: the writer and the reader are two
            connections and must share one file.
        synchronous: ``"NORMAL"`` (the default) survives the crash of the process:
            a step reported recorded stays recorded. ``"FULL"`` also survives losing
            power or the operating system, at the cost of an fsync per commit.
        migrate: ``False`` opens only an existing file that holds this code's schema,
            and changes nothing otherwise: no file, table or migration is ever made
            (what operator tools use, so that a mistyped path or an app not upgraded
            yet is refused instead of changed).

    Raises:
        ConfigurationError: the path or the durability level is not usable.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL", migrate: bool = True
    ) -> None:
        text = os.fspath(path)
        if text in ("", ":memory:") or (text.startswith("file:") and "memory" in text):
            raise ConfigurationError(
                f"SqliteStore cannot use an in-memory SQLite database ({text!r}): its "
                f"writer and reader are separate connections that must share one file. "
                f"Use MemoryStore() (or 'memory://') for an in-memory store, or a "
                f"temporary file"
            )
        level = synchronous.upper()
        if level not in SYNCHRONOUS_PRAGMAS:
            raise ConfigurationError(
                f"synchronous must be NORMAL or FULL, not {synchronous!r}: NORMAL survives "
                f"a crash of the process, FULL also a power loss"
            )
        self.path = Path(text)
        self.synchronous = level
        self.migrate = migrate
        self._writer: SqliteWriter | None = None
        self._reader: SqliteReader | None = None
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        migrate = "" if self.migrate else ", migrate=False"
        return f"SqliteStore({str(self.path)!r}, synchronous={self.synchronous!r}{migrate})"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file if needed, migrate the schema, start the writer and reader
        (with ``migrate=False``: require the file and this code's schema instead).

        Raises:
            ConfigurationError: ``migrate=False`` and no file, or no durably tables in
                it, or not a SQLite database (left untouched).
            SchemaVersionError: the file was written by a newer durably, or, with
                ``migrate=False``, an older one (left untouched).
            StoreError: the database cannot be opened.
        """
        async with self._opening:
            if self._writer is not None:
                return
            name = str(self.path)
            opener = connect_and_migrate if self.migrate else _connect_existing
            writer = SqliteWriter(lambda: opener(self.path, self.synchronous), name=name)
            await writer.start()
            reader = SqliteReader(lambda: connect(self.path, self.synchronous), name=name)
            try:
                await reader.start()
            except BaseException:
                await writer.stop()
                raise
            self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Commit the writes already submitted, then close both connections."""
        async with self._opening:
            writer, reader = self._writer, self._reader
            self._writer = self._reader = None
            if writer is not None:
                await writer.stop()
            if reader is not None:
                await reader.stop()

    @property
    def writer(self) -> SqliteWriter:
        """The writer thread (its counters show group commit at work).

        Raises:
            StoreError: the store is not open.
        """
        if self._writer is None:
            raise StoreError(f"the SQLite store {self.path} is not open; await store.open() first")
        return self._writer

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self.writer.submit(work)

    async def _read(self, work: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        if self._reader is None:
            raise StoreError(f"the SQLite store {self.path} is not open; await store.open() first")
        return await self._reader.read(work, snapshot=snapshot)

    # -- workflows -------------------------------------------------------------------

    async def create_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        """Insert ``record`` unless its id is taken (see :class:`~durably.store.Store`)."""
        statement, values = _INSERT_WORKFLOW.bind(_rows.workflow_values(record))

        def work(connection: sqlite3.Connection) -> tuple[WorkflowRecord, bool]:
            if connection.execute(statement, values).rowcount:
                return record, True  # stored as given
            by_id = {"workflow_id": record.workflow_id}
            existing = connection.execute(Q["get_workflow"], by_id).fetchone()
            return _rows.workflow_from_row(existing), False

        # One statement: the read runs only after an insert that changed nothing, so
        # neither a savepoint (in a batch) nor a transaction (alone) has anything to
        # undo or to keep together.
        return await self.writer.submit(work, one_statement=True)

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow with this id, or None."""
        row = await self._read(
            lambda c: c.execute(Q["get_workflow"], {"workflow_id": workflow_id}).fetchone()
        )
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
            "statuses": None if statuses is None else _json_list(statuses),
            "names": None if names is None else _json_list(names),
            "created_after": created_after,
            "created_before": created_before,
            "limit": max(limit, 0),
            "offset": max(offset, 0),
        }
        query = Q["list_workflows_newest_first" if newest_first else "list_workflows_oldest_first"]
        rows = await self._read(lambda c: c.execute(query, params).fetchall())
        return [_rows.workflow_from_row(row) for row in rows]

    async def count_workflows(self) -> dict[WorkflowStatus, int]:
        """The number of workflows in each status that has any."""
        rows = await self._read(lambda c: c.execute(Q["count_workflows"]).fetchall())
        return {WorkflowStatus(row["status"]): row["total"] for row in rows}

    async def delete_workflow(self, workflow_id: str) -> bool:
        """Delete a workflow; its operations, attempts and signals cascade."""
        params = {"workflow_id": workflow_id}
        deleted = await self._write(lambda c: c.execute(Q["delete_workflow"], params).rowcount)
        return deleted > 0

    async def purge_workflows(
        self, *, finished_before: int, statuses: Collection[WorkflowStatus]
    ) -> int:
        """Delete workflows in ``statuses`` that finished before ``finished_before``."""
        params = {"finished_before": finished_before, "statuses": _json_list(statuses)}
        deleted: int = await self._write(lambda c: c.execute(Q["purge_workflows"], params).rowcount)
        return deleted

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
        row = await self._write(lambda c: c.execute(Q["claim_workflow"], params).fetchone())
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
        in ``versions``), earliest due first, in one statement; the list is in that
        order."""
        if limit <= 0 or not names:
            return []
        params = {
            "owner": owner,
            "names": _json_list(names),
            **_version_params(versions),
            "now": now,
            "lease_until": lease_until,
            "limit": limit,
        }
        rows = await self._write(lambda c: c.execute(Q["claim_due_workflows"], params).fetchall())
        rows.sort(key=lambda row: int(row["claim_position"]))
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
        :class:`~durably.store.Store`); SQLite's write lock serialises the claims."""
        if limit <= 0 or not names:
            return []
        params = {
            "owner": owner,
            "queue": queue.name,
            "names": _json_list(names),
            **_version_params(versions),
            "now": now,
            "lease_until": lease_until,
            "window_start": now - queue.rate_period,
        }

        def work(connection: sqlite3.Connection) -> list[Any]:
            usage = connection.execute(Q["queue_usage"], params).fetchone()
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
            return connection.execute(query, {**params, "limit": allowed}).fetchall()

        rows = await self._write(work)
        rows.sort(key=lambda row: int(row["claim_position"]))
        return [_rows.workflow_from_row(row) for row in rows]

    async def next_wake_time(
        self,
        *,
        names: Collection[str],
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> int | None:
        """The earliest timer of a suspended workflow named in ``names`` (of a version
        in ``versions``), or None."""
        params = {"names": _json_list(names), **_version_params(versions)}
        row = await self._read(lambda c: c.execute(Q["next_wake_time"], params).fetchone())
        wake_at: int | None = row["wake_at"]
        return wake_at

    async def renew_leases(self, *, owner: str, now: int, lease_until: int) -> list[str]:
        """Extend every lease of ``owner`` in one statement and record its heartbeat.

        Returns:
            The ids (sorted) of its workflows whose cancellation was requested.
        """
        params = {"owner": owner, "now": now, "lease_until": lease_until}

        def work(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(Q["renew_leases"], params).fetchall()
            connection.execute(Q["record_heartbeat"], params)
            return sorted(row["workflow_id"] for row in rows if row["cancel_requested"])

        return await self._write(work)

    async def release_workflows(self, *, owner: str) -> int:
        """Give up every lease of ``owner``; return how many there were."""
        params = {"owner": owner}
        released: int = await self._write(
            lambda c: c.execute(Q["release_workflows"], params).rowcount
        )
        return released

    async def register_executor(
        self, *, executor_id: str, hostname: str, pid: int, now: int
    ) -> None:
        """Record a live executor (insert or replace)."""
        params = {"executor_id": executor_id, "hostname": hostname, "pid": pid, "now": now}
        await self._write(lambda c: c.execute(Q["register_executor"], params))

    async def list_executors(self) -> list[tuple[str, str, int, int]]:
        """Every registered executor, by id."""
        rows = await self._read(lambda c: c.execute(Q["list_executors"]).fetchall())
        return [
            (row["executor_id"], row["hostname"], row["pid"], row["heartbeat_at"]) for row in rows
        ]

    async def remove_executor(self, *, executor_id: str, expire_leases: bool) -> int:
        """Forget an executor; with ``expire_leases`` release its workflows at once."""
        params = {"executor_id": executor_id, "owner": executor_id}

        def work(connection: sqlite3.Connection) -> int:
            connection.execute(Q["remove_executor"], params)
            if not expire_leases:
                return 0
            expired: int = connection.execute(Q["expire_leases"], params).rowcount
            return expired

        return await self._write(work)

    # -- history ---------------------------------------------------------------------

    async def load_history(self, workflow_id: str) -> History:
        """Every recorded operation and failed attempt, read in one snapshot."""
        params = {"workflow_id": workflow_id}

        def work(connection: sqlite3.Connection) -> History:
            operations = connection.execute(Q["load_operations"], params).fetchall()
            attempts = connection.execute(Q["load_attempts"], params).fetchall()
            by_seq: dict[int, list[AttemptRecord]] = {}
            for row in attempts:
                by_seq.setdefault(row["seq"], []).append(_rows.attempt_from_row(row))
            return History(
                operations={row["seq"]: _rows.operation_from_row(row) for row in operations},
                attempts=by_seq,
            )

        return await self._read(work, snapshot=True)

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
            "kinds": _json_list([kind.value for kind in kinds]),
            "name": name,
            "after_seq": after_seq,
        }
        rows = await self._read(lambda c: c.execute(Q["list_operations"], params).fetchall())
        return [_rows.operation_from_row(row) for row in rows]

    def record_operation(
        self, fence: Fence, operation: OperationRecord
    ) -> Coroutine[Any, Any, None]:
        """Insert or replace the operation at its seq, fenced: one statement, with no
        read first and no write to the workflow's row (reads derive ``updated_at``).

        The checkpoint of every step: a plain function returning the writer's
        coroutine, which spares a coroutine of its own (it raises at the call what it
        finds wrong with its arguments)."""
        require_same_workflow(fence, operation.workflow_id)
        values = _rows.operation_values(fence, operation)

        def work(connection: sqlite3.Connection) -> None:
            _record(connection, fence, values)

        return self.writer.submit(work, one_statement=True)

    async def record_attempt(self, fence: Fence, attempt: AttemptRecord) -> None:
        """Insert (or replace, same key) a failed attempt, fenced."""
        require_same_workflow(fence, attempt.workflow_id)
        params = _rows.attempt_params(fence, attempt)

        def work(connection: sqlite3.Connection) -> None:
            if connection.execute(Q["record_attempt"], params).rowcount == 0:
                raise lease_lost(fence)

        await self.writer.submit(work, one_statement=True)

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
        """Compare-and-set the status, fenced (see :class:`~durably.store.Store`)."""
        values = (
            fence.workflow_id,
            fence.owner,
            fence.fence,
            status._value_,
            *_SOURCES[status],
            now,
            # 0/1 rather than bools: sqlite3 binds an exact int at once, but looks
            # for an adapter for a bool first (about 3,400 instructions each).
            int(status.is_terminal or status is WorkflowStatus.PARKED),
            int(status.is_terminal),
            result,
            error,
        )
        statement, values = _SET_STATUS.bind(values)

        def work(connection: sqlite3.Connection) -> WorkflowRecord:
            return _changed_or_made(connection, statement, values, fence, status)

        # One statement, then the read of the row it changed (in its transaction),
        # which cannot fail it: the status it converts was just written under the CHECK.
        return await self.writer.submit(work, one_statement=True, reads_after=True)

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

        def work(connection: sqlite3.Connection) -> WorkflowRecord:
            return _changed_or_made(
                connection, Q["suspend_workflow"], params, fence, WorkflowStatus.SUSPENDED
            )

        return await self._write(work)

    async def request_cancel(
        self, workflow_id: str, *, compensate: bool, now: int
    ) -> WorkflowRecord:
        """Record a cancellation request (see :class:`~durably.store.Store` and
        :meth:`MemoryStore.request_cancel <durably.store.MemoryStore.request_cancel>`)."""
        params = {"workflow_id": workflow_id, "compensate": int(compensate), "now": now}

        def work(connection: sqlite3.Connection) -> WorkflowRecord:
            row = connection.execute(Q["get_workflow"], params).fetchone()
            if row is None:
                raise workflow_not_found(workflow_id)
            record = _rows.workflow_from_row(row)
            query = cancel_action(record, compensate=compensate, now=now)
            if query is None:
                return record
            return _rows.workflow_from_row(connection.execute(Q[query], params).fetchone())

        return await self._write(work)

    async def resume_workflow(self, workflow_id: str, *, now: int) -> WorkflowRecord:
        """The operator's resume (see :class:`~durably.store.Store`)."""

        def work(connection: sqlite3.Connection) -> WorkflowRecord:
            row = connection.execute(Q["get_workflow"], {"workflow_id": workflow_id}).fetchone()
            if row is None:
                raise workflow_not_found(workflow_id)
            record = _rows.workflow_from_row(row)
            params = _rows.resume_params(record, resume_target(record), now)
            if record.status is not WorkflowStatus.PARKED:
                connection.execute(Q["delete_failed_attempts"], params)
                connection.execute(Q["delete_failed_operations"], params)
            resumed = connection.execute(Q["resume_workflow"], params).fetchone()
            return _rows.workflow_from_row(resumed)

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
        """Append to the inbox and wake the workflow if it is suspended (see
        :meth:`MemoryStore.append_signal <durably.store.MemoryStore.append_signal>`)."""
        params = {
            "workflow_id": workflow_id,
            "name": name,
            "payload": payload,
            "serializer": serializer,
            "dedup_key": dedup_key,
            "now": now,
        }

        def work(connection: sqlite3.Connection) -> tuple[SignalRecord, bool]:
            row = connection.execute(Q["get_workflow"], params).fetchone()
            if row is None:
                raise workflow_not_found(workflow_id)
            if dedup_key is not None:
                existing = connection.execute(Q["find_signal_by_dedup_key"], params).fetchone()
                if existing is not None:
                    return _rows.signal_from_row(existing), False
            status = WorkflowStatus(row["status"])
            if status.is_terminal:
                raise workflow_finished(workflow_id, status, f"send it signal {name!r}")
            inserted = connection.execute(Q["insert_signal"], params).fetchone()
            connection.execute(Q["wake_suspended"], params)
            return _rows.signal_from_row(inserted), True

        return await self._write(work)

    async def consume_signal(self, fence: Fence, operation: OperationRecord) -> SignalRecord | None:
        """Consume the oldest unconsumed signal named ``operation.name`` and record
        the operation with its payload, fenced, in one transaction; None (and no
        write) when there is none."""
        require_same_workflow(fence, operation.workflow_id)
        params = _rows.consume_params(fence, operation)

        def work(connection: sqlite3.Connection) -> SignalRecord | None:
            row = connection.execute(Q["consume_signal"], params).fetchone()
            if row is None:
                if connection.execute(Q["is_owned"], params).fetchone() is None:
                    raise lease_lost(fence)
                return None
            signal = _rows.signal_from_row(row)
            recorded = dataclasses.replace(
                operation,
                status=OperationStatus.COMPLETED,
                result=signal.payload,
                serializer=signal.serializer,
            )
            _record(connection, fence, _rows.operation_values(fence, recorded))
            return signal

        return await self._write(work)

    async def list_signals(self, workflow_id: str) -> list[SignalRecord]:
        """The inbox, consumed or not, oldest first."""
        params = {"workflow_id": workflow_id}
        rows = await self._read(lambda c: c.execute(Q["list_signals"], params).fetchall())
        return [_rows.signal_from_row(row) for row in rows]


def _changed_or_made(
    connection: sqlite3.Connection,
    update: str,
    params: dict[str, Any] | tuple[Any, ...],
    fence: Fence,
    wanted: WorkflowStatus,
) -> WorkflowRecord:
    """The workflow's row after the fenced status ``update`` (of its one row, by
    ``params``' ``workflow_id``); when it matched nothing, the row if it shows that
    very change made already, else the refusal raised (see :func:`made_or_refused`).
    An UPDATE then a read by primary key, in the same transaction, costs less than
    ``RETURNING *``."""
    changed = connection.execute(update, params).rowcount
    row = connection.execute(Q["get_workflow_row"], {"workflow_id": fence.workflow_id}).fetchone()
    record = None if row is None else _rows.workflow_from_row(row)
    if changed and record is not None:
        return record
    return made_or_refused(record, fence, wanted)


def _record(connection: sqlite3.Connection, fence: Fence, values: tuple[Any, ...]) -> None:
    """The fenced upsert of an operation (``values`` from :func:`_rows.operation_values`):
    one statement, refused when the fence is stale."""
    # _RECORD_OPERATION.bind(values), written out: the method call costs 1.5% of a
    # sequential step (python -m bench.instructions).
    if values[-1] is None and values[-2] is None:
        changed = connection.execute(_RECORD_OPERATION.short, values[:-2]).rowcount
    else:
        changed = connection.execute(_RECORD_OPERATION.full, values).rowcount
    if changed == 0:
        raise lease_lost(fence)

"""Migrations that rebuild a table (SQLite changes a CHECK only that way): every row
comes through, the children of a rebuilt parent are kept, and a database whose rows
lost their parent is refused without a change."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from durably.errors import StoreError
from durably.models import WorkflowStatus
from durably.store import SqliteStore
from durably.store.sqlite._migrate import latest_version, migrate

#: Every table that refers to workflows, and the query of all its rows in key order.
CHILDREN = {
    "operations": "SELECT * FROM operations ORDER BY workflow_id, seq",
    "attempts": "SELECT * FROM attempts ORDER BY workflow_id, seq, attempt",
    "signals": "SELECT * FROM signals ORDER BY signal_id",
}


def database_at(path: Path, version: int) -> sqlite3.Connection:
    """A new file migrated to ``version``, foreign keys on, in autocommit."""
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, up_to=version) == version
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def add_workflow(connection: sqlite3.Connection, workflow_id: str, status: str) -> None:
    """A workflow with two operations (one of them failed once before) and a signal."""
    connection.execute(
        "INSERT INTO workflows (workflow_id, workflow_name, status, input, owner, fence,"
        " lease_until, cancel_requested, created_at, updated_at, queue_name, priority)"
        " VALUES (?, 'w', ?, '[1]', 'me', 3, 50, 1, 1, 2, 'q', 7)",
        (workflow_id, status),
    )
    for seq, op_status in enumerate(("COMPLETED", "WAITING")):
        connection.execute(
            "INSERT INTO operations (workflow_id, seq, kind, name, status, result,"
            " serializer, attempts, started_at, wake_at) VALUES (?, ?, 'STEP', ?, ?, ?,"
            " 'json', 2, 10, 99)",
            (workflow_id, seq, f"s{seq}", op_status, f"{seq}"),
        )
    connection.execute(
        "INSERT INTO attempts (workflow_id, seq, attempt, error, started_at, finished_at)"
        " VALUES (?, 0, 1, 'boom', 5, 6)",
        (workflow_id,),
    )
    connection.execute(
        "INSERT INTO signals (workflow_id, name, payload, created_at) VALUES (?, 'go', '1', 3)",
        (workflow_id,),
    )


def contents(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of workflows (with its rowid) and of its children, in key order."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        found = {
            "workflows": connection.execute(
                "SELECT rowid, * FROM workflows ORDER BY workflow_id"
            ).fetchall()
        }
        for table, query in CHILDREN.items():
            found[table] = connection.execute(query).fetchall()
    return found


async def lost_status_is_refused_then_delete(
    store: SqliteStore, table: str, workflow_id: str
) -> None:
    """The CHECK of ``table`` refuses the status 'LOST'; then delete one workflow."""
    statements = {
        "operations": "UPDATE operations SET status = 'LOST' WHERE seq = 0",
        "workflows": "UPDATE workflows SET status = 'LOST' WHERE rowid = 1",
    }
    with pytest.raises(StoreError) as caught:
        await store.writer.submit(lambda c: c.execute(statements[table]))
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    await store.writer.submit(
        lambda c: c.execute("DELETE FROM workflows WHERE workflow_id = ?", (workflow_id,))
    )


async def test_rebuilding_operations_keeps_every_row_and_its_check(tmp_path: Path) -> None:
    """Version 4 rebuilds the operations table (its status CHECK without an IN list):
    every operation of a version-3 database comes through unchanged, deleting a
    workflow still deletes its operations, and a status outside the three is still
    refused by the database."""
    path = tmp_path / "v3.db"
    with contextlib.closing(database_at(path, 3)) as connection:
        for index in range(3):
            add_workflow(connection, f"w-{index}", "RUNNING")
        connection.execute(
            "UPDATE operations SET status = 'FAILED' WHERE workflow_id = 'w-1' AND seq = 1"
        )
    before = contents(path)
    store = SqliteStore(path)
    await store.open()
    try:
        assert contents(path) == before
        history = await store.load_history("w-1")
        assert [op.status.value for op in history.operations.values()] == ["COMPLETED", "FAILED"]
        await lost_status_is_refused_then_delete(store, "operations", "w-0")
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as check:
        left = check.execute("SELECT DISTINCT workflow_id FROM operations ORDER BY 1").fetchall()
    assert left == [("w-1",), ("w-2",)]


async def test_rebuilding_workflows_keeps_every_row_and_every_child(tmp_path: Path) -> None:
    """Version 5 rebuilds workflows, the parent of three tables with ON DELETE
    CASCADE: a version-4 database with a workflow in every status keeps every
    workflow (rowid included) and every child row; afterwards the writer's
    connection has foreign keys on again, deleting a workflow deletes its children,
    and the status CHECK still refuses a status outside the state machine."""
    path = tmp_path / "v4.db"
    with contextlib.closing(database_at(path, 4)) as connection:
        for status in WorkflowStatus:
            add_workflow(connection, f"w-{status.value}", status.value)
    before = contents(path)
    assert all(len(before[table]) >= len(WorkflowStatus) for table in CHILDREN)
    store = SqliteStore(path)
    await store.open()
    try:
        assert contents(path) == before
        with contextlib.closing(sqlite3.connect(path)) as check:
            assert check.execute("PRAGMA user_version").fetchone()[0] == latest_version()
            assert check.execute("PRAGMA foreign_key_check").fetchall() == []
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert await store.writer.submit(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0])
        record = await store.get_workflow("w-PARKED")
        assert record is not None and record.status is WorkflowStatus.PARKED
        await lost_status_is_refused_then_delete(store, "workflows", "w-RUNNING")
    finally:
        await store.close()
    after = contents(path)
    for table in ("workflows", *CHILDREN):
        assert [row for row in before[table] if "w-RUNNING" not in row] == after[table]


async def test_a_child_row_without_its_workflow_stops_the_migration(tmp_path: Path) -> None:
    """Migrations run with foreign keys off: an operation whose workflow is missing
    (deleted by another tool with foreign keys off) would go unnoticed, so the
    migration checks them all. Opening fails with a StoreError that names the table
    and says what to do, and the file keeps its version and its rows."""
    path = tmp_path / "orphan.db"
    with contextlib.closing(database_at(path, 4)) as connection:
        add_workflow(connection, "w-1", "RUNNING")
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute("DELETE FROM workflows")
    before = contents(path)
    store = SqliteStore(path)
    with pytest.raises(StoreError, match=r"in attempts, operations, signals whose workflow"):
        await store.open()
    assert contents(path) == before
    with contextlib.closing(sqlite3.connect(path)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 4

"""The physical limits: raw committed INSERTs and history reads, with no framework.

A step's checkpoint is one row keyed by (workflow id, sequence number); these
functions write and read rows of that shape with the bare driver (``sqlite3`` with
the same WAL and ``synchronous`` settings as durably's store, in the same directory;
``psycopg`` over loopback), so durably's figures can be read as a share of what the
database itself allows from Python. They run in a child process like every sample.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

TABLE = (
    "CREATE TABLE operations_raw (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "result TEXT NOT NULL, PRIMARY KEY (workflow_id, seq))"
)
WARM_UP_COMMITS = 20


def commit_rate(
    commit_one: Callable[[], None], rows_per_commit: int, seconds: float, max_rows: int
) -> dict[str, Any]:
    """Rows per second of ``commit_one`` (one commit of ``rows_per_commit`` rows), timed
    after a few warm-up commits, for ``max_rows`` rows or ``seconds``, whichever ends
    first."""
    for _ in range(WARM_UP_COMMITS):
        commit_one()
    rows = 0
    started = time.perf_counter()
    deadline = started + seconds
    while rows < max_rows and time.perf_counter() < deadline:
        commit_one()
        rows += rows_per_commit
    elapsed = time.perf_counter() - started
    return {"rows_per_second": rows / elapsed, "rows": rows, "seconds": elapsed}


def sqlite_commit_rate(
    path: str,
    synchronous: str,
    rows_per_commit: int,
    payload_bytes: int,
    seconds: float,
    max_rows: int,
    journal_mode: str = "WAL",
) -> dict[str, Any]:
    """Rows per second committed in transactions of ``rows_per_commit`` INSERTs.

    Stops after ``max_rows`` rows or ``seconds`` seconds, whichever comes first
    (after a few warm-up commits that are not counted). A WAL is first grown to its
    size between two checkpoints, as durably's store grows its own: the commits are
    timed as in a process that has been running for a while, not while the file grows
    (which doubles the cost of a ``FULL`` commit on ext4).
    """
    from pathlib import Path

    from durably.store.sqlite._connect import preallocate_wal

    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA journal_mode = {journal_mode}")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.execute(TABLE)
        if journal_mode.upper() == "WAL":
            preallocate_wal(connection, Path(path), sync=synchronous.upper() == "FULL")
        payload = "x" * payload_bytes
        insert = "INSERT INTO operations_raw (workflow_id, seq, result) VALUES (?, ?, ?)"
        seq = 0

        def commit_one() -> None:
            nonlocal seq
            connection.execute("BEGIN IMMEDIATE")
            if rows_per_commit == 1:
                connection.execute(insert, ("workflow-1", seq, payload))
            else:
                connection.executemany(
                    insert, [("workflow-1", seq + n, payload) for n in range(rows_per_commit)]
                )
            connection.execute("COMMIT")
            seq += rows_per_commit

        return commit_rate(commit_one, rows_per_commit, seconds, max_rows)
    finally:
        connection.close()


def sqlite_checkpoint_rate(
    path: str,
    synchronous: str,
    seconds: float,
    max_rows: int,
    rows_per_commit: int = 1,
    steps_per_workflow: int | None = None,
) -> dict[str, Any]:
    """Checkpoints per second written with durably's own statement and schema, by the
    bare driver: the fenced upsert of the operation.

    By default one workflow's checkpoints, one per commit, in autocommit mode: what
    the engine's SQLite writer commits for the steps of a sequential workflow. The gap
    between this and the raw single-row rate is the cost of durably's schema; the gap
    between this and durably's step rate is the cost of the engine in Python.

    ``rows_per_commit`` > 1 with ``steps_per_workflow``: that many workflows at a time,
    each of ``steps_per_workflow`` checkpoints, their starts staggered, and one
    checkpoint of each per transaction, one statement each; a workflow that has written
    its last is replaced by a new one. That is what the writer commits in one batch for
    that many concurrent workflows (group commit): the most steps per second durably's
    schema allows them before any engine code runs.
    """
    from pathlib import Path

    from durably.store._rows import OPERATION_PARAMS
    from durably.store.sqlite._connect import connect_and_migrate
    from durably.store.sqlite.store import _RECORD_OPERATION

    steps = steps_per_workflow or max_rows + WARM_UP_COMMITS
    # The connection the store's writer opens: same schema, same pragmas.
    connection = connect_and_migrate(Path(path), synchronous)
    try:
        # Every workflow the run can reach, inserted before the clock starts: what is
        # timed is the checkpoints alone.
        count = rows_per_commit + (max_rows + WARM_UP_COMMITS * rows_per_commit) // steps + 1
        connection.executemany(
            "INSERT INTO workflows (workflow_id, workflow_name, status, version, serializer,"
            " owner, fence, created_at, updated_at) VALUES"
            " (?, 'bench', 'RUNNING', '', 'json', 'bench', 1, 0, 0)",
            [(f"wf-{number}",) for number in range(count)],
        )
        step = {
            "owner": "bench",
            "fence": 1,
            "kind": "STEP",
            "name": "step",
            "status": "COMPLETED",
            "result": "1",
            "serializer": "json",
            "attempts": 1,
        }
        # Bound by position, as the store binds a completed step: the values in
        # OPERATION_PARAMS order but the last (error and wake_at, None, written as NULL
        # literals), the four that change per checkpoint set by index.
        statement = _RECORD_OPERATION.short
        values = [step.get(name) for name in OPERATION_PARAMS[: -_RECORD_OPERATION.count]]
        at_workflow, at_seq, at_start, at_finish = (
            OPERATION_PARAMS.index(name)
            for name in ("workflow_id", "seq", "started_at", "finished_at")
        )
        # Each slot: [its workflow's number, its next seq]; staggered starts.
        slots = [[number, number % steps] for number in range(rows_per_commit)]
        next_workflow = rows_per_commit
        clock = 0

        def write(slot: list[int]) -> None:
            nonlocal next_workflow, clock
            values[at_workflow] = f"wf-{slot[0]}"
            values[at_seq], values[at_start], values[at_finish] = slot[1], clock, clock + 1
            if connection.execute(statement, values).rowcount != 1:
                raise AssertionError("the fenced upsert wrote nothing")
            clock += 1
            slot[1] += 1
            if slot[1] == steps:
                slot[0], slot[1] = next_workflow, 0
                next_workflow += 1

        def commit_one() -> None:
            if rows_per_commit == 1:
                write(slots[0])  # autocommit
                return
            connection.execute("BEGIN IMMEDIATE")
            for slot in slots:
                write(slot)
            connection.execute("COMMIT")

        return commit_rate(commit_one, rows_per_commit, seconds, max_rows)
    finally:
        connection.close()


def postgres_commit_rate(
    url: str,
    schema: str,
    rows_per_commit: int,
    payload_bytes: int,
    seconds: float,
    max_rows: int,
) -> dict[str, Any]:
    """Rows per second committed over loopback, ``rows_per_commit`` INSERTs a transaction."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        connection.execute(TABLE)
        connection.commit()
        payload = "x" * payload_bytes
        insert = "INSERT INTO operations_raw (workflow_id, seq, result) VALUES (%s, %s, %s)"
        seq = 0

        def commit_one() -> None:
            nonlocal seq
            if rows_per_commit == 1:
                connection.execute(insert, ("workflow-1", seq, payload))
            else:
                with connection.cursor() as cursor:
                    cursor.executemany(
                        insert, [("workflow-1", seq + n, payload) for n in range(rows_per_commit)]
                    )
            connection.commit()
            seq += rows_per_commit

        return commit_rate(commit_one, rows_per_commit, seconds, max_rows)


def sqlite_read_history(path: str, rows: int, payload_bytes: int) -> dict[str, Any]:
    """Seconds to read one workflow's ``rows`` checkpoint rows on a new connection."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(TABLE)
        payload = "x" * payload_bytes
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO operations_raw VALUES (?, ?, ?)",
            [("workflow-1", seq, payload) for seq in range(rows)],
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    started = time.perf_counter()
    reader = sqlite3.connect(path, isolation_level=None)
    fetched = reader.execute(
        "SELECT seq, result FROM operations_raw WHERE workflow_id = ? ORDER BY seq",
        ("workflow-1",),
    ).fetchall()
    elapsed = time.perf_counter() - started
    reader.close()
    assert len(fetched) == rows
    return {"seconds": elapsed}


def postgres_read_history(url: str, schema: str, rows: int, payload_bytes: int) -> dict[str, Any]:
    """Seconds to read one workflow's ``rows`` checkpoint rows (connection already open,
    as a pool's would be)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        connection.execute(TABLE)
        payload = "x" * payload_bytes
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO operations_raw VALUES (%s, %s, %s)",
                [("workflow-1", seq, payload) for seq in range(rows)],
            )
        started = time.perf_counter()
        fetched = connection.execute(
            "SELECT seq, result FROM operations_raw WHERE workflow_id = %s ORDER BY seq",
            ("workflow-1",),
        ).fetchall()
        elapsed = time.perf_counter() - started
    assert len(fetched) == rows
    return {"seconds": elapsed}

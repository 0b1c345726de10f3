"""Storage faults under the SQLite store.

Real faults where SQLite can make them on demand: a full database (``PRAGMA
max_page_count``: SQLite itself answers ``SQLITE_FULL``), a read-only database (a
``mode=ro`` connection or ``PRAGMA query_only``: ``SQLITE_READONLY``), a lock held by
another connection (``SQLITE_BUSY``). Where SQLite cannot be made to fail on demand (an
I/O error), the store's own connections are opened with :class:`FaultyConnection`,
which raises the exact ``sqlite3.OperationalError`` SQLite would (same
``sqlite_errorcode`` and ``sqlite_errorname``, and the transaction rolled back as
SQLite rolls it back after ``SQLITE_FULL`` or ``SQLITE_IOERR``) at chosen statements.
"""

from __future__ import annotations

import sqlite3
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from durably.store.sqlite import _connect

#: The primary and extended result codes used here, with SQLite's own messages.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_FULL = 13
SQLITE_IOERR_WRITE = 778
SQLITE_IOERR_FSYNC = 1034
CODES = {
    SQLITE_BUSY: ("SQLITE_BUSY", "database is locked"),
    SQLITE_LOCKED: ("SQLITE_LOCKED", "database table is locked"),
    SQLITE_READONLY: ("SQLITE_READONLY", "attempt to write a readonly database"),
    SQLITE_IOERR: ("SQLITE_IOERR", "disk I/O error"),
    SQLITE_FULL: ("SQLITE_FULL", "database or disk is full"),
    SQLITE_IOERR_WRITE: ("SQLITE_IOERR_WRITE", "disk I/O error"),
    SQLITE_IOERR_FSYNC: ("SQLITE_IOERR_FSYNC", "disk I/O error"),
}
#: Errors after which SQLite may roll the whole transaction back; the injector always
#: does (the harder case for the store).
ROLLS_BACK = {SQLITE_FULL, SQLITE_IOERR, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC}


def sqlite_error(code: int) -> sqlite3.OperationalError:
    """The exception the sqlite3 module raises for this result code."""
    name, message = CODES[code]
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    error.sqlite_errorname = name  # type: ignore[attr-defined]
    return error


#: Statements that change the database, and the statements that begin or end a write
#: transaction.
_CHANGES = ("INSERT", "UPDATE", "DELETE")
_ENDS = ("BEGIN IMMEDIATE", "COMMIT")


@dataclass
class Rule:
    """Fail statements containing ``statement`` with ``code``, ``times`` times (on the
    writer's connection only, unless ``readers`` too)."""

    code: int
    statement: str
    times: int | None
    skip: int = 0
    readers: bool = False


@dataclass
class StatementFaults:
    """The faults to inject into the store's connections, and a count of those injected."""

    rules: list[Rule] = field(default_factory=list)
    injected: int = 0
    statements: int = 0

    def fail(
        self,
        code: int,
        statement: str,
        *,
        times: int | None = 1,
        skip: int = 0,
        readers: bool = False,
    ) -> None:
        """Fail the next ``times`` statements containing ``statement`` (after ``skip``
        of them have run); ``times=None`` fails them until :meth:`clear`. Only the
        writer's connection fails, unless ``readers``."""
        self.rules.append(Rule(code, statement, times, skip, readers))

    def clear(self) -> None:
        """Stop injecting."""
        self.rules.clear()

    def before(self, connection: FaultyConnection, sql: str) -> None:
        self.statements += 1
        # A change made outside a transaction (autocommit) begins and commits its own:
        # faults at BEGIN IMMEDIATE or COMMIT strike it too.
        own_transaction = not connection.in_transaction and sql.startswith(_CHANGES)
        for rule in self.rules:
            matches = rule.statement in sql or (own_transaction and rule.statement in _ENDS)
            if not matches or not (rule.readers or connection.is_writer):
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            if rule.times is not None:
                if rule.times == 0:
                    continue
                rule.times -= 1
            self.injected += 1
            if rule.code in ROLLS_BACK and connection.in_transaction:
                sqlite3.Connection.execute(connection, "ROLLBACK")
            raise sqlite_error(rule.code)


class FaultyConnection(sqlite3.Connection):
    """A real SQLite connection that first asks its :class:`StatementFaults`."""

    faults: StatementFaults | None = None
    #: Set at its first write transaction: the store's reader never begins one.
    is_writer = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql.startswith("BEGIN IMMEDIATE"):
            self.is_writer = True
        if self.faults is not None:
            self.faults.before(self, sql)
        return super().execute(sql, parameters)


def inject_faults(monkeypatch: pytest.MonkeyPatch, faults: StatementFaults) -> None:
    """Make every SQLite store opened from now on use faulty connections."""

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = sqlite3.connect(*args, factory=FaultyConnection, **kwargs)
        connection.faults = faults  # type: ignore[attr-defined]
        return connection

    shim = types.SimpleNamespace(**{name: getattr(sqlite3, name) for name in dir(sqlite3)})
    shim.connect = connect
    monkeypatch.setattr(_connect, "sqlite3", shim)


def open_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every SQLite store opened from now on open its file read-only (``mode=ro``),
    as on a read-only mount: the way to get a read-only database when running as root,
    whom file permissions do not stop."""

    def connect(database: str | Path, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{database}?mode=ro", *args, uri=True, **kwargs)

    shim = types.SimpleNamespace(**{name: getattr(sqlite3, name) for name in dir(sqlite3)})
    shim.connect = connect
    monkeypatch.setattr(_connect, "sqlite3", shim)


def permissions_stop_writes(directory: Path) -> bool:
    """Whether a file without write permission really cannot be written here (not when
    running as root)."""
    probe = directory / "permission-probe"
    probe.write_text("")
    probe.chmod(0o400)
    try:
        with probe.open("a"):
            return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o600)
        probe.unlink()


def rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of durably's tables, read with a separate plain connection."""
    connection = sqlite3.connect(path)
    try:
        return {
            table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)  # noqa: S608
            for table in ("workflows", "operations", "attempts", "signals")
        }
    finally:
        connection.close()


def recorded(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The recorded work: :func:`rows` without the lease columns (a heartbeat may
    renew a lease in place while a test compares)."""
    state = rows(path)
    connection = sqlite3.connect(path)
    try:
        state["workflows"] = sorted(
            connection.execute(
                "SELECT workflow_id, status, input, result, error, fence FROM workflows"
            ).fetchall()
        )
    finally:
        connection.close()
    return state

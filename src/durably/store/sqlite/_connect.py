"""Opening the database file: private file mode, version checks and pragmas."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from durably.errors import StoreError
from durably.store.sqlite._migrate import check_version, migrate

#: RETURNING (every claim and status change uses it) arrived in SQLite 3.35.
MINIMUM_SQLITE = (3, 35, 0)
BUSY_TIMEOUT_MS = 5000
_BUSY_TIMEOUT_PRAGMA = "PRAGMA busy_timeout = 5000"

#: The accepted durability levels and the statement that sets each. Pragmas take no
#: bound parameters, so the statements are fixed text chosen from this table.
SYNCHRONOUS_PRAGMAS = {
    "NORMAL": "PRAGMA synchronous = NORMAL",
    "FULL": "PRAGMA synchronous = FULL",
}

#: The WAL file's header, and each frame's header before its page (SQLite's WAL format).
_WAL_HEADER_BYTES = 32
_WAL_FRAME_HEADER_BYTES = 24

_COMMON_PRAGMAS = (
    "PRAGMA foreign_keys = ON",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -8000",
)


def create_private_file(path: Path) -> None:
    """Create ``path`` readable and writable by its owner only, if it is missing.

    SQLite creates the ``-wal`` and ``-shm`` files with the database's mode, so they
    are private too. An existing file keeps the mode its owner gave it.
    """
    if path.exists():
        return
    create_private_directories(path.parent)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process created it between our check and our open
    os.close(descriptor)


def create_private_directories(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each ``0700`` (the umask can only
    take bits away): a group- or world-writable directory would let another local
    user delete or replace the private database. Existing directories are left as
    their owner made them."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            os.mkdir(folder, 0o700)


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection to an existing, current database with durably's pragmas.

    ``isolation_level=None``: transactions are begun and ended explicitly (by the
    writer's ``BEGIN IMMEDIATE``), never implicitly by the driver.
    ``check_same_thread=False``: the writer's connection is opened on its thread but
    also used by the event loop's flush; the writer's lock keeps the uses apart.
    """
    if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
        raise StoreError(
            f"durably needs SQLite {'.'.join(map(str, MINIMUM_SQLITE))} or newer, but this "
            f"Python uses SQLite {sqlite3.sqlite_version}; use a newer Python build"
        )
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute(_BUSY_TIMEOUT_PRAGMA)
        check_version(connection)
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"SQLite could not put {path} in WAL mode (it stays {mode!r}); durably "
                f"needs a local file system that supports shared memory"
            )
        connection.execute(SYNCHRONOUS_PRAGMAS[synchronous])
        for pragma in _COMMON_PRAGMAS:
            connection.execute(pragma)
        connection.row_factory = sqlite3.Row
    except BaseException:
        connection.close()
        raise
    return connection


def connect_and_migrate(path: Path, synchronous: str) -> sqlite3.Connection:
    """The writer's connection: create the file if needed, then bring the schema up
    to date (refusing a newer one before touching the file)."""
    create_private_file(path)
    connection = connect(path, synchronous)
    try:
        migrate(connection)
        _require_json(connection)
        preallocate_wal(connection, path, sync=synchronous == "FULL")
    except BaseException:
        connection.close()
        raise
    return connection


def preallocate_wal(connection: sqlite3.Connection, path: Path, *, sync: bool) -> None:
    """Grow the ``-wal`` file to the size it reaches between two checkpoints, once.

    SQLite keeps a WAL at its largest size until the last connection closes, so a
    growing WAL is paid for over the first ``wal_autocheckpoint`` commits of every
    process that opens the database first; zeros written here, once, take it away.
    With ``synchronous=FULL`` every commit syncs the WAL, and while the WAL grows that
    sync must also make its new size durable, a file-system journal commit that costs
    as much again (measured on ext4: about 210 µs per single-row commit while the WAL
    grows, 100 µs once it has its size): ``sync`` makes the zeros and the size durable
    here. With ``NORMAL``, commits that overwrite cached pages instead of appending
    are cheaper too (about 13 → 11 µs); the zeros need no sync.

    Safe because the zeros go only after the file's end, while this connection holds
    the write lock (no other connection can append frames meanwhile), and SQLite reads
    a WAL only up to its first frame whose checksum fails, which a zero frame does. It
    is only an optimisation: when another connection holds the write lock it is
    skipped at once (never waited for), and if the disk cannot take the zeros they are
    removed; either way the store opens as it would have.
    """
    page_size = int(connection.execute("PRAGMA page_size").fetchone()[0])
    frames = int(connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    target = _WAL_HEADER_BYTES + frames * (_WAL_FRAME_HEADER_BYTES + page_size)
    wal = path.with_name(path.name + "-wal")
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return  # another connection is writing: it is not worth waiting for
        raise
    finally:
        connection.execute(_BUSY_TIMEOUT_PRAGMA)
    try:
        try:
            descriptor = os.open(wal, os.O_WRONLY)  # never create it: SQLite does, 0600
        except FileNotFoundError:
            return
        try:
            size = os.fstat(descriptor).st_size
            if size >= target:
                return
            try:
                _write_zeros(descriptor, size, target)
                if sync:
                    os.fsync(descriptor)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(descriptor, size)
        finally:
            os.close(descriptor)
    finally:
        connection.execute("ROLLBACK")


def _write_zeros(descriptor: int, start: int, end: int) -> None:
    chunk = bytes(min(end - start, 1 << 20))
    offset = start
    while offset < end:
        offset += os.pwrite(descriptor, chunk[: end - offset], offset)


def _require_json(connection: sqlite3.Connection) -> None:
    """Collection filters are bound as JSON arrays: SQLite's JSON functions are needed."""
    try:
        connection.execute("SELECT count(*) FROM json_each('[]')")
    except sqlite3.OperationalError as error:
        raise StoreError(
            f"this Python's SQLite ({sqlite3.sqlite_version}) lacks the JSON functions "
            f"that durably needs; use a Python build with SQLite 3.38 or newer"
        ) from error

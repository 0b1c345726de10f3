"""What only the SQLite store has: the file, pragmas, migrations, threads, processes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import multiprocessing
import os
import signal
import sqlite3
import stat
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

import durably.store.sqlite._connect
from durably.errors import (
    ConfigurationError,
    CorruptRecordError,
    SchemaVersionError,
    StoreError,
)
from durably.store import SqliteStore
from durably.store.sqlite._migrate import latest_version, migrate, migrations
from durably.testing._contract.existing import ExistingDatabaseContract
from durably.testing.store_contract import NOW, claimed, operation, workflow

NAMES = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys", "temp_store", "cache_size")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open store on a new file."""
    store = SqliteStore(tmp_path / "durably.db")
    await store.open()
    yield store
    await store.close()


def pragmas(connection: sqlite3.Connection) -> dict[str, object]:
    """The pragmas durably sets, as this connection sees them."""
    return {name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in NAMES}


def schema(path: Path) -> list[tuple[str, str, str]]:
    """Every table and index of a database file, with whitespace-normalised SQL."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
    finally:
        connection.close()
    return [(kind, name, " ".join(sql.split())) for kind, name, sql in rows]


def read_pragma(path: Path, name: str) -> int:
    """One integer pragma of a file, read with a plain connection."""
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        connection.close()


# -- connections ---------------------------------------------------------------------


@pytest.mark.parametrize(("level", "code"), [("NORMAL", 1), ("FULL", 2)])
async def test_every_connection_has_the_pragmas(tmp_path: Path, level: str, code: int) -> None:
    """WAL, the durability level, busy timeout, foreign keys and memory settings are on
    both the writer's and the reader's connection."""
    store = SqliteStore(tmp_path / "p.db", synchronous=level)
    await store.open()
    try:
        on_writer = await store.writer.submit(pragmas)
        on_reader = await store._read(pragmas)
    finally:
        await store.close()
    expected = {
        "journal_mode": "wal",
        "synchronous": code,
        "busy_timeout": 5000,
        "foreign_keys": 1,
        "temp_store": 2,
        "cache_size": -8000,
    }
    # Reads and writes done on the event loop never wait for a lock (a busy database
    # sends them to their thread, which waits the full timeout: tested below).
    assert on_writer == on_reader == {**expected, "busy_timeout": 0}


async def test_synchronous_is_case_insensitive(tmp_path: Path) -> None:
    """ "full" means FULL."""
    assert SqliteStore(tmp_path / "x.db", synchronous="full").synchronous == "FULL"


def test_an_unknown_durability_level_is_refused(tmp_path: Path) -> None:
    """Only NORMAL and FULL are offered; the error says what each means."""
    with pytest.raises(ConfigurationError, match="NORMAL or FULL"):
        SqliteStore(tmp_path / "x.db", synchronous="OFF")


@pytest.mark.parametrize("path", [":memory:", "", "file::memory:?cache=shared"])
def test_an_in_memory_database_is_refused_with_a_way_out(path: str) -> None:
    """The writer and reader need one shared file; the error suggests MemoryStore."""
    with pytest.raises(ConfigurationError, match=r"MemoryStore\(\).*temporary file"):
        SqliteStore(path)


async def test_a_read_is_answered_on_the_event_loop_when_nothing_holds_the_file(
    store: SqliteStore,
) -> None:
    """The fast path: no thread hop for a read that need not wait."""
    assert await store._read(lambda _: threading.get_ident()) == threading.get_ident()


async def test_a_read_that_must_wait_waits_on_its_thread_not_on_the_loop(
    store: SqliteStore,
) -> None:
    """A read that finds the database busy on the loop (SQLITE_BUSY: another process
    holds it exclusively, or is recovering its WAL) is done again on the reader
    thread, which waits the full busy timeout; the loop keeps running meanwhile
    (writes behave the same against a real lock: see test_sqlite_writer.py)."""
    loop_thread = threading.get_ident()
    busy_timeouts: list[int] = []

    def busy_on_the_loop(connection: sqlite3.Connection) -> str:
        busy_timeouts.append(connection.execute("PRAGMA busy_timeout").fetchone()[0])
        if threading.get_ident() == loop_thread:
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise error
        return threading.current_thread().name

    read = asyncio.ensure_future(store._read(busy_on_the_loop))
    for _ in range(3):
        await asyncio.sleep(0)  # yield: the loop is free while the thread reads
    assert (await read).startswith("durably-sqlite-reader")
    assert busy_timeouts == [0, 5000]


async def test_a_closed_store_says_to_open_it(tmp_path: Path) -> None:
    """Reads and writes on a store that is not open raise StoreError, not a hang."""
    store = SqliteStore(tmp_path / "closed.db")
    with pytest.raises(StoreError, match=r"await store\.open\(\)"):
        await store.get_workflow("w-1")
    with pytest.raises(StoreError, match=r"await store\.open\(\)"):
        await store.create_workflow(workflow())
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.list_signals("w-1")


async def test_closing_commits_the_writes_already_submitted(tmp_path: Path) -> None:
    """close() waits for queued writes; none is lost or left hanging."""
    path = tmp_path / "close.db"
    store = SqliteStore(path)
    await store.open()
    writes = [asyncio.ensure_future(store.create_workflow(workflow(f"w-{n}"))) for n in range(50)]
    await asyncio.sleep(0)  # let every write reach the writer's queue
    await store.close()
    assert all(created for _, created in await asyncio.gather(*writes))
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert len(await reopened.list_workflows(limit=100)) == 50
    finally:
        await reopened.close()


async def test_a_corrupt_row_is_reported_as_such(store: SqliteStore) -> None:
    """A row that cannot become a record raises CorruptRecordError naming the workflow."""
    fence = await claimed(store)
    await store.record_operation(fence, operation())
    await store.writer.submit(lambda c: c.execute("UPDATE operations SET kind = 'FROM_THE_FUTURE'"))
    with pytest.raises(CorruptRecordError, match="w-1"):
        await store.load_history("w-1")


# -- the file ------------------------------------------------------------------------


async def test_the_database_and_its_wal_are_private(tmp_path: Path) -> None:
    """A new database, its -wal and -shm files are readable by their owner only."""
    path = tmp_path / "private.db"
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create_workflow(workflow())
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        await store.close()


async def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    """durably never changes the mode of a file its owner created."""
    path = tmp_path / "shared.db"
    path.touch()
    os.chmod(path, 0o640)
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_missing_directories_are_created(tmp_path: Path) -> None:
    """A path in a directory that does not exist yet works."""
    path = tmp_path / "a" / "b" / "durably.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert path.exists()


async def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    """A path under a regular file cannot be created: StoreError says which file."""
    (tmp_path / "plain").write_text("not a directory")
    store = SqliteStore(tmp_path / "plain" / "durably.db")
    with pytest.raises(StoreError, match=r"durably\.db") as caught:
        await store.open()
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """Opening some other file fails clearly and leaves it alone."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"notes\.db") as caught:
        await SqliteStore(path).open()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes() == before


def wal_size_between_checkpoints(path: Path) -> int:
    """The size of a WAL that holds ``wal_autocheckpoint`` frames (SQLite's format: a
    32-byte header, then frames of a 24-byte header and one page)."""
    return 32 + read_pragma(path, "wal_autocheckpoint") * (24 + read_pragma(path, "page_size"))


def wal_of(path: Path) -> os.stat_result:
    """The size and mode of a database's ``-wal`` file."""
    return Path(f"{path}-wal").stat()


def integrity(path: Path) -> str:
    """SQLite's verdict on the whole file."""
    connection = sqlite3.connect(path)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


WRITER_THEN_KILLED = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA journal_mode = WAL")
connection.execute("PRAGMA wal_autocheckpoint = 0")  # every commit stays in the WAL
connection.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY)")
for n in range(50):
    connection.execute("INSERT INTO notes VALUES (?)", (n,))
print("written", flush=True)
sys.stdin.readline()  # killed before this returns
"""


@pytest.mark.parametrize("level", ["NORMAL", "FULL"])
async def test_the_wal_starts_at_its_size_between_checkpoints(tmp_path: Path, level: str) -> None:
    """The store grows the WAL to the size it reaches between two checkpoints when it
    opens, so that commits do not pay for growing it; the file stays private and the
    data readable."""
    path = tmp_path / "grown.db"
    store = SqliteStore(path, synchronous=level)
    await store.open()
    try:
        assert wal_of(path).st_size >= wal_size_between_checkpoints(path)
        assert stat.S_IMODE(wal_of(path).st_mode) == 0o600
        await store.create_workflow(workflow())
        assert await store.get_workflow("w-1") == workflow()
    finally:
        await store.close()
    assert integrity(path) == "ok"


async def test_growing_a_wal_left_by_a_killed_writer_keeps_its_commits(tmp_path: Path) -> None:
    """Another program is killed (SIGKILL) with its 50 commits still in the WAL; the
    store then grows that WAL past them. Every commit is found, the store's writes
    land, and SQLite finds the file intact."""
    path = tmp_path / "killed.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER_THEN_KILLED,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert await asyncio.wait_for(child.stdout.readline(), 60) == b"written\n"
    child.send_signal(signal.SIGKILL)
    await child.wait()
    # The commits are in the WAL, which is smaller than the store makes it.
    assert 0 < wal_of(path).st_size < wal_size_between_checkpoints(path)

    store = SqliteStore(path, synchronous="FULL")
    await store.open()
    try:
        assert wal_of(path).st_size >= wal_size_between_checkpoints(path)
        await store.create_workflow(workflow())
        assert await store.get_workflow("w-1") == workflow()
    finally:
        await store.close()
    assert integrity(path) == "ok"
    connection = sqlite3.connect(path)
    try:
        notes = connection.execute("SELECT n FROM notes ORDER BY n").fetchall()
        assert notes == [(n,) for n in range(50)]
        assert connection.execute("SELECT count(*) FROM workflows").fetchone()[0] == 1
    finally:
        connection.close()


async def test_growing_the_wal_under_another_open_connection_loses_nothing(
    tmp_path: Path,
) -> None:
    """Another connection keeps writing into the same WAL before and after a FULL store
    grows it (the growth waits for the write lock): both see every row."""
    path = tmp_path / "shared.db"
    bootstrap = SqliteStore(path)
    await bootstrap.open()
    await bootstrap.close()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA wal_autocheckpoint = 0")  # its frames stay in the WAL
        other.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY)")
        other.executemany("INSERT INTO notes VALUES (?)", [(n,) for n in range(100)])
        store = SqliteStore(path, synchronous="FULL")
        await store.open()
        try:
            assert wal_of(path).st_size >= wal_size_between_checkpoints(path)
            await store.create_workflow(workflow())
            other.executemany("INSERT INTO notes VALUES (?)", [(n,) for n in range(100, 200)])
            await store.create_workflow(workflow("w-2"))
            assert await store.get_workflow("w-2") == workflow("w-2")
            assert other.execute("SELECT count(*) FROM workflows").fetchone()[0] == 2
        finally:
            await store.close()
        assert other.execute("SELECT count(*) FROM notes").fetchone()[0] == 200
    finally:
        other.close()
    assert integrity(path) == "ok"


async def test_a_writer_holding_the_lock_at_open_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection takes the write lock right after the schema check: the open
    does not wait for it to grow the WAL (it skips that, at once) and the store works
    once the other connection commits."""
    path = tmp_path / "busy.db"
    bootstrap = SqliteStore(path)
    await bootstrap.open()
    await bootstrap.close()
    # Used on the store's writer thread (in the open) and on this one.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    real_migrate = durably.store.sqlite._connect.migrate

    def migrate_then_lose_the_lock(connection: sqlite3.Connection) -> int:
        version = real_migrate(connection)
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY)")
        return version

    monkeypatch.setattr(durably.store.sqlite._connect, "migrate", migrate_then_lose_the_lock)
    store = SqliteStore(path, synchronous="FULL")
    try:
        await store.open()  # with the old wait, this failed after the busy timeout
        assert other.in_transaction
        assert wal_of(path).st_size < wal_size_between_checkpoints(path)
        other.execute("COMMIT")
        await store.create_workflow(workflow())
        assert await store.get_workflow("w-1") == workflow()
    finally:
        await store.close()
        other.close()
    assert integrity(path) == "ok"


async def test_a_disk_too_full_to_grow_the_wal_leaves_it_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Growing the WAL is only an optimisation: when the disk fills up halfway, the
    zeros already written are taken back and the store opens and works."""
    path = tmp_path / "full-disk.db"
    attempts: list[int] = []

    def write_then_fill_up(descriptor: int, start: int, end: int) -> None:
        attempts.append(start)
        os.pwrite(descriptor, bytes((end - start) // 2), start)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(durably.store.sqlite._connect, "_write_zeros", write_then_fill_up)
    other = sqlite3.connect(path, isolation_level=None)  # keeps the WAL between opens
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("CREATE TABLE notes (n INTEGER PRIMARY KEY)")
    other.execute("INSERT INTO notes VALUES (1)")
    bootstrap = SqliteStore(path)  # the schema, so that the second open writes nothing
    await bootstrap.open()
    await bootstrap.close()
    before = wal_of(path).st_size
    store = SqliteStore(path, synchronous="FULL")
    try:
        await store.open()
        assert attempts == [before, before]  # both opens tried, from the same end
        assert wal_of(path).st_size == before
        await store.create_workflow(workflow())
        assert await store.get_workflow("w-1") == workflow()
        assert other.execute("SELECT n FROM notes").fetchall() == [(1,)]
    finally:
        await store.close()
        other.close()
    assert integrity(path) == "ok"


# -- schema and migrations -----------------------------------------------------------


async def test_the_schema_version_is_recorded(store: SqliteStore) -> None:
    """user_version holds the newest migration's number."""
    assert read_pragma(store.path, "user_version") == latest_version() >= 1


async def test_reopening_changes_nothing_and_keeps_the_data(tmp_path: Path) -> None:
    """A second open migrates nothing (the schema cookie is unchanged) and finds the data."""
    path = tmp_path / "v.db"
    store = SqliteStore(path)
    await store.open()
    await store.create_workflow(workflow())
    await store.close()
    cookie, before = read_pragma(path, "schema_version"), schema(path)
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.get_workflow("w-1") == workflow()
        await reopened.open()
    finally:
        await reopened.close()
    assert (read_pragma(path, "schema_version"), schema(path)) == (cookie, before)


async def test_a_newer_schema_is_refused_and_the_file_left_untouched(tmp_path: Path) -> None:
    """SchemaVersionError says to upgrade durably; not a byte of the file changes."""
    path = tmp_path / "newer.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE from_the_future (x)")
    connection.execute(f"PRAGMA user_version = {latest_version() + 1}")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    store = SqliteStore(path)
    with pytest.raises(SchemaVersionError, match="upgrade durably"):
        await store.open()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["newer.db"]
    with pytest.raises(StoreError, match="not open"):
        await store.get_workflow("w-1")


@pytest.mark.parametrize("start", range(latest_version()))
async def test_migrating_from_any_version_gives_the_fresh_schema(
    tmp_path: Path, start: int
) -> None:
    """A database at an older version, once opened, has exactly a new database's schema."""
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    store = SqliteStore(fresh)
    await store.open()
    await store.close()
    connection = sqlite3.connect(old, isolation_level=None)
    try:
        assert migrate(connection, up_to=start) == start
    finally:
        connection.close()
    store = SqliteStore(old)
    await store.open()
    await store.close()
    assert schema(old) == schema(fresh)
    assert read_pragma(old, "user_version") == read_pragma(fresh, "user_version")


def test_migrations_are_numbered_without_gaps() -> None:
    """Versions run 1, 2, ... and each migration has statements."""
    found = migrations()
    assert [migration.version for migration in found] == list(range(1, len(found) + 1))
    assert all(migration.statements for migration in found)


async def test_the_schema_has_every_table(store: SqliteStore) -> None:
    """workflows, operations, attempts, signals and executors exist."""
    tables = {name for kind, name, _ in schema(store.path) if kind == "table"}
    assert tables >= {"workflows", "operations", "attempts", "signals", "executors"}


async def test_status_columns_are_checked(store: SqliteStore) -> None:
    """A status outside the state machine is refused by the database itself."""
    await store.create_workflow(workflow())
    with pytest.raises(StoreError) as caught:
        await store.writer.submit(lambda c: c.execute("UPDATE workflows SET status = 'LOST'"))
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)


# -- opening without migrating -------------------------------------------------------


class SqliteDatabase:
    """A new, empty database file (0 bytes, as ``touch`` makes it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def store(self, *, migrate: bool) -> SqliteStore:
        """A new store on the file."""
        return SqliteStore(self.path, migrate=migrate)

    def _migrate(self, up_to: int) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            migrate(connection, up_to=up_to)
        finally:
            connection.close()

    async def record_older_schema(self) -> None:
        """The schema of the version before the latest."""
        self._migrate(latest_version() - 1)

    async def record_newer_schema(self) -> None:
        """The latest schema, recorded as the version after it."""
        self._migrate(latest_version())
        with contextlib.closing(sqlite3.connect(self.path)) as connection:
            connection.execute(f"PRAGMA user_version = {latest_version() + 1}")

    async def snapshot(self) -> object:
        """The file's bytes."""
        return self.path.read_bytes()


class TestSqliteExistingDatabase(ExistingDatabaseContract):
    """SqliteStore(migrate=False) passes the contract of opening without migrating."""

    @pytest.fixture
    def database(self, tmp_path: Path) -> SqliteDatabase:
        """An empty file."""
        return SqliteDatabase(tmp_path / "existing.db")


async def test_without_migrating_a_missing_file_is_refused_not_created(tmp_path: Path) -> None:
    """No file appears, not even a directory."""
    store = SqliteStore(tmp_path / "missing" / "typo.db", migrate=False)
    with pytest.raises(ConfigurationError, match=r"no database file at .*typo\.db"):
        await store.open()
    assert os.listdir(tmp_path) == []


async def test_without_migrating_an_empty_file_is_left_exactly_as_it_was(tmp_path: Path) -> None:
    """Not a byte, a mode, or a -wal or -shm file beside it."""
    path = tmp_path / "empty.db"
    path.touch()
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="holds no durably tables"):
        await SqliteStore(path, migrate=False).open()
    assert path.read_bytes() == b""
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["empty.db"]


async def test_without_migrating_another_programs_database_is_not_durablys(
    tmp_path: Path,
) -> None:
    """Its own tables and its own user_version (even one above durably's) are another
    program's: the error says there are no durably tables, not that durably is old."""
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE invoices (n INTEGER)")
        connection.execute(f"PRAGMA user_version = {latest_version() + 40}")
        connection.commit()
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="holds no durably tables"):
        await SqliteStore(path, migrate=False).open()
    assert path.read_bytes() == before


async def test_without_migrating_a_file_that_is_not_sqlite_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    """A wrong path, said so: not a SQLite database, left alone."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match=r"notes\.db is not a SQLite database"):
        await SqliteStore(path, migrate=False).open()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["notes.db"]


# -- two processes -------------------------------------------------------------------


def claim_everything(path: str, owner: str, barrier: Barrier) -> list[str]:
    """In a child process: claim batches until nothing is left; return the ids."""

    async def run() -> list[str]:
        store = SqliteStore(path)
        await store.open()
        claimed_ids: list[str] = []
        try:
            barrier.wait()
            while True:
                batch = await store.claim_due_workflows(
                    owner=owner, names=["checkout"], now=NOW, lease_until=NOW + 10**9, limit=7
                )
                if not batch:
                    return claimed_ids
                claimed_ids.extend(record.workflow_id for record in batch)
        finally:
            await store.close()

    return asyncio.run(run())


def claim_in_child(
    path: str, owner: str, barrier: Barrier, results: Queue[tuple[str, list[str]]]
) -> None:
    """Process target: report the claimed ids on ``results``."""
    results.put((owner, claim_everything(path, owner, barrier)))


async def test_two_processes_never_claim_the_same_workflow(tmp_path: Path) -> None:
    """Two processes claiming from one file take each of 200 workflows exactly once."""
    path = tmp_path / "shared.db"
    store = SqliteStore(path)
    await store.open()
    for index in range(200):
        await store.create_workflow(workflow(f"w-{index:03}"))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results: Queue[tuple[str, list[str]]] = context.Queue()
    children = [
        context.Process(target=claim_in_child, args=(str(path), f"exec-{n}", barrier, results))
        for n in range(2)
    ]
    for child in children:
        child.start()
    reports = [await asyncio.to_thread(results.get, timeout=60) for _ in children]
    for child in children:
        await asyncio.to_thread(child.join, 60)
        assert child.exitcode == 0
    results.close()
    results.join_thread()
    try:
        counts = Counter(workflow_id for _, ids in reports for workflow_id in ids)
        assert set(counts) == {f"w-{index:03}" for index in range(200)}
        assert set(counts.values()) == {1}
        for owner, ids in reports:
            for workflow_id in ids:
                record = await store.get_workflow(workflow_id)
                assert record is not None and (record.owner, record.fence) == (owner, 1)
    finally:
        await store.close()

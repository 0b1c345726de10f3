"""What only the SQLite store has: the file, pragmas, migrations, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from durably import ConfigurationError, MemoryStore, SchemaVersionError, SqliteStore, open_store
from durably.errors import LeaseLostError
from durably.models import Fence
from durably.store.sqlite._migrate import latest_version
from durably.testing.store_contract import NOW, claimed, operation, workflow


async def test_file_and_wal_are_created_private(tmp_path: Path) -> None:
    """The database and its WAL are readable by their owner only (0600)."""
    store = SqliteStore(tmp_path / "private.db")
    await store.open()
    try:
        await store.create_workflow(workflow())
        for path in (tmp_path / "private.db", tmp_path / "private.db-wal"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        await store.close()


@pytest.mark.parametrize("level", ["NORMAL", "FULL"])
async def test_pragmas_are_applied(tmp_path: Path, level: str) -> None:
    """WAL, the durability level, busy timeout and foreign keys are on every connection."""
    store = SqliteStore(tmp_path / "p.db", synchronous=level)
    await store.open()
    try:
        pragmas = await store._read(
            lambda c: [
                c.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            ]
        )
    finally:
        await store.close()
    assert pragmas == ["wal", {"NORMAL": 1, "FULL": 2}[level], 5000, 1]


async def test_schema_version_is_recorded_and_reopening_is_a_no_op(tmp_path: Path) -> None:
    """user_version holds the schema version; opening again keeps the data."""
    path = tmp_path / "v.db"
    store = SqliteStore(path)
    await store.open()
    await store.create_workflow(workflow())
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.get_workflow("w-1") is not None
    finally:
        await reopened.close()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    finally:
        connection.close()


async def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """A database written by a newer durably is not opened, and not changed."""
    path = tmp_path / "newer.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE future (x)")
    connection.execute(f"PRAGMA user_version = {latest_version() + 1}")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(SchemaVersionError, match="upgrade durably"):
        await SqliteStore(path).open()
    assert path.read_bytes() == before


async def test_migrated_schema_equals_a_fresh_schema(tmp_path: Path) -> None:
    """Applying every migration in order gives the schema a fresh database has."""

    def schema(path: Path) -> list[tuple[str, str]]:
        connection = sqlite3.connect(path)
        try:
            rows = connection.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
            ).fetchall()
            return [(name, " ".join(sql.split())) for name, sql in rows]
        finally:
            connection.close()

    fresh, migrated = tmp_path / "fresh.db", tmp_path / "migrated.db"
    for path in (fresh, migrated):
        store = SqliteStore(path)
        await store.open()
        await store.close()
    store = SqliteStore(migrated)
    await store.open()
    await store.close()
    assert schema(fresh) == schema(migrated)
    assert {name for name, _ in schema(fresh)} >= {
        "workflows",
        "operations",
        "attempts",
        "signals",
        "executors",
    }


async def test_concurrent_writes_are_group_committed(tmp_path: Path) -> None:
    """Writes of many workflows share transactions, and each still succeeds."""
    store = SqliteStore(tmp_path / "group.db")
    await store.open()
    try:
        fences = [await claimed(store, f"w-{index}") for index in range(50)]
        before = (store.writer.transactions, store.writer.writes)
        await asyncio.gather(
            *(store.record_operation(fence, operation(fence.workflow_id)) for fence in fences)
        )
        transactions = store.writer.transactions - before[0]
        writes = store.writer.writes - before[1]
        assert writes == 50
        assert transactions < writes
        for fence in fences:
            assert 0 in (await store.load_history(fence.workflow_id)).operations
    finally:
        await store.close()


async def test_one_refused_write_does_not_fail_its_batch(tmp_path: Path) -> None:
    """A fenced write refused inside a batch rolls back only itself."""
    store = SqliteStore(tmp_path / "batch.db")
    await store.open()
    try:
        good = await claimed(store, "good")
        await store.create_workflow(workflow("stale"))
        stale = Fence(workflow_id="stale", owner="nobody", fence=7)
        results = await asyncio.gather(
            store.record_operation(good, operation("good")),
            store.record_operation(stale, operation("stale")),
            return_exceptions=True,
        )
        assert results[0] is None
        assert isinstance(results[1], LeaseLostError)
        assert 0 in (await store.load_history("good")).operations
        assert (await store.load_history("stale")).operations == {}
    finally:
        await store.close()


def test_in_memory_sqlite_is_refused_with_a_way_out() -> None:
    """':memory:' cannot be shared by writer and readers; the error says what to use."""
    with pytest.raises(ConfigurationError, match="MemoryStore"):
        SqliteStore(":memory:")


@pytest.mark.parametrize(
    ("url", "path", "level"),
    [
        ("sqlite:///app.db", "app.db", "NORMAL"),
        ("sqlite:////var/data/app.db", "/var/data/app.db", "NORMAL"),
        ("sqlite:///app.db?synchronous=full", "app.db", "FULL"),
        ("data/app.sqlite3", "data/app.sqlite3", "NORMAL"),
    ],
)
def test_open_store_parses_sqlite_urls(url: str, path: str, level: str) -> None:
    """SQLite URLs name a file and a durability level."""
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert (str(store.path), store.synchronous) == (path, level)


def test_open_store_memory_url() -> None:
    """memory:// is the in-memory store."""
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db", "accepted forms"),
        ("sqlite://host/app.db", "three slashes"),
        ("sqlite:///app.db?journal=off", "unknown SQLite URL option"),
        ("sqlite:///app.db?synchronous=OFF", "NORMAL or FULL"),
        ("sqlite:///:memory:", "MemoryStore"),
    ],
)
def test_open_store_rejects_bad_urls_clearly(url: str, message: str) -> None:
    """A bad URL gets a ConfigurationError that says what is accepted."""
    with pytest.raises(ConfigurationError, match=message):
        open_store(url)


async def test_store_is_unusable_when_closed(tmp_path: Path) -> None:
    """Calls on a closed store raise a StoreError saying to open it."""
    store = SqliteStore(tmp_path / "closed.db")
    from durably import StoreError

    with pytest.raises(StoreError, match="open"):
        await store.get_workflow("x")
    assert NOW


async def test_a_write_blocked_by_another_process_waits_off_the_event_loop(
    tmp_path: Path,
) -> None:
    """When another connection holds the write lock, the write is retried by the writer
    thread (the event loop keeps running) and commits once the lock is released."""
    path = tmp_path / "locked.db"
    store = SqliteStore(path)
    await store.open()
    try:
        fence = await claimed(store)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(store.record_operation(fence, operation()))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not write.done()
        other.execute("COMMIT")
        other.close()
        await write
        assert 0 in (await store.load_history("w-1")).operations
    finally:
        await store.close()

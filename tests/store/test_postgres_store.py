"""PostgresStore passes the store contract, on the real server (a schema per test);
its schema is migrated once, to the latest version, and a newer one is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import psycopg
import pytest
from psycopg import sql
from tests.conftest import postgres_url

from durably.errors import SchemaVersionError, StoreError
from durably.store import Store
from durably.store.postgres import PostgresStore
from durably.testing import StoreContract
from durably.testing._contract.records import claimed, send, signal_wait


class TestPostgresStore(StoreContract):
    """The PostgreSQL store."""

    @pytest.fixture
    async def store(self, postgres_schema: str) -> AsyncIterator[Store]:
        """An empty, open schema."""
        store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=2)
        await store.open()
        yield store
        await store.close()


async def test_a_consume_run_again_at_its_seq_returns_the_same_signal(
    postgres_schema: str,
) -> None:
    """The store runs a statement again when its connection is lost, which may be after
    it committed: consuming again at a seq that consumed a signal returns that signal,
    leaves the next one waiting and keeps the recorded operation's payload."""
    store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=2)
    await store.open()
    try:
        fence = await claimed(store)
        first, _ = await send(store, payload='"1"')
        await send(store, payload='"2"')
        consumed = await store.consume_signal(fence, signal_wait(seq=3))
        again = await store.consume_signal(fence, signal_wait(seq=3))
        assert consumed is not None and consumed.signal_id == first.signal_id
        assert again == consumed
        assert [signal.consumed_seq for signal in await store.list_signals("w-1")] == [3, None]
        history = await store.load_history("w-1")
        assert history.operations[3].result == '"1"'
        following = await store.consume_signal(fence, signal_wait(seq=4))
        assert following is not None and following.payload == '"2"'
    finally:
        await store.close()


def migration_numbers() -> list[int]:
    """The numbers of the migration scripts shipped in the package, read from the
    files (not from the code under test)."""
    directory = resources.files("durably.store.postgres").joinpath("migrations")
    names = [entry.name for entry in directory.iterdir() if entry.name.endswith(".sql")]
    return sorted(int(name[:4]) for name in names)


async def schema_state(schema: str) -> tuple[list[tuple[Any, ...]], ...]:
    """Everything a migration could change in ``schema``: its columns, indexes and
    recorded version rows."""
    async with await psycopg.AsyncConnection.connect(postgres_url()) as connection:
        columns = await connection.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2",
            (schema,),
        )
        indexes = await connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
            (schema,),
        )
        versions = await connection.execute(
            sql.SQL("SELECT version FROM {}").format(sql.Identifier(schema, "schema_version"))
        )
        return await columns.fetchall(), await indexes.fetchall(), await versions.fetchall()


async def test_the_version_table_holds_the_latest_migration_after_open(
    postgres_schema: str,
) -> None:
    """A new schema is migrated to the highest-numbered migration script, recorded as
    the one row of its version table."""
    store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=1)
    await store.open()
    await store.close()
    _, _, versions = await schema_state(postgres_schema)
    numbers = migration_numbers()
    assert numbers == list(range(1, len(numbers) + 1))
    assert versions == [(numbers[-1],)]


async def test_a_schema_of_a_newer_durably_is_refused_untouched(postgres_schema: str) -> None:
    """A schema whose version table names a version beyond this code's migrations (a
    newer durably upgraded it): SchemaVersionError saying to upgrade durably, and not a
    column, an index or the version row changes; the store stays closed."""
    store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=1)
    await store.open()
    await store.close()
    newer = migration_numbers()[-1] + 1
    async with await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True) as admin:
        await admin.execute(
            sql.SQL("UPDATE {} SET version = %s").format(
                sql.Identifier(postgres_schema, "schema_version")
            ),
            (newer,),
        )
    before = await schema_state(postgres_schema)

    refused = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=1)
    with pytest.raises(SchemaVersionError) as error:
        await refused.open()
    message = str(error.value)
    assert f"{postgres_schema!r} is version {newer}" in message
    assert "upgrade durably (pip install --upgrade 'durably[postgres]')" in message
    assert "Nothing was changed" in message
    assert await schema_state(postgres_schema) == before
    with pytest.raises(StoreError, match="is not open"):
        await refused.get_workflow("w-1")


async def test_stores_opening_a_new_schema_at_once_migrate_it_once(postgres_schema: str) -> None:
    """Four stores (four workers starting together) open the same new schema at once:
    none fails, and one transaction made every table and the version row."""
    stores = [PostgresStore(postgres_url(), schema=postgres_schema, pool_size=1) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    _, _, versions = await schema_state(postgres_schema)
    assert versions == [(migration_numbers()[-1],)]
    async with await psycopg.AsyncConnection.connect(postgres_url()) as connection:
        # xmin: the transaction that wrote a row (of the catalog, or of the table).
        cursor = await connection.execute(
            sql.SQL(
                "SELECT xmin::text FROM pg_class WHERE relnamespace = %s::regnamespace"
                " UNION SELECT xmin::text FROM {}"
            ).format(sql.Identifier(postgres_schema, "schema_version")),
            (postgres_schema,),
        )
        assert len(await cursor.fetchall()) == 1, "the schema was written by several migrations"

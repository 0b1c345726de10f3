"""Contract: a store opened without migrating (``migrate=False``) opens only a database
that holds this code's schema, and refuses any other, changing nothing.

Operator tools open stores this way (:func:`durably.admin.open_operator_store`), so
that a mistyped path or schema is refused instead of filled with empty tables, and a
database of apps not upgraded yet is not migrated under them. The option belongs to
the stores that have a schema (``SqliteStore``, ``PostgresStore``), not to the
``Store`` protocol, so this class is not part of ``StoreContract``: the tests of such
a store subclass it and give it a ``database`` fixture, a :class:`Database` on a new,
empty database.
"""

from __future__ import annotations

from typing import Protocol

import pytest

from durably.errors import ConfigurationError, SchemaVersionError, StoreError
from durably.store.base import Store
from durably.testing._contract.records import workflow


class Database(Protocol):
    """One new, empty database, and the stores a test opens on it."""

    def store(self, *, migrate: bool) -> Store:
        """A new, unopened store on the database."""
        ...

    async def record_older_schema(self) -> None:
        """Give the database the schema of the version before this code's, as an
        older durably left it."""
        ...

    async def record_newer_schema(self) -> None:
        """Make the database look written by a newer durably: this code's schema with
        a higher version recorded."""
        ...

    async def snapshot(self) -> object:
        """Everything that a refused open must leave as it was, comparable with ``==``
        (a file's bytes; a server's schemas, tables and recorded version)."""
        ...


class ExistingDatabaseContract:
    """``open()`` of a store built with ``migrate=False``."""

    async def test_a_database_without_durably_tables_is_refused_unchanged(
        self, database: Database
    ) -> None:
        """A new database is not given durably's tables: the error says that none are
        there and how they are made, and the store stays closed."""
        before = await database.snapshot()
        store = database.store(migrate=False)
        with pytest.raises(ConfigurationError, match="no durably tables") as refused:
            await store.open()
        assert "durably worker" in str(refused.value)
        assert await database.snapshot() == before
        with pytest.raises(StoreError, match="not open"):
            await store.get_workflow("w-1")

    async def test_a_current_database_is_read_and_written(self, database: Database) -> None:
        """The database of an app of this version opens as it is, for reads and writes."""
        app_store = database.store(migrate=True)
        await app_store.open()
        await app_store.create_workflow(workflow())
        await app_store.close()
        before = await database.snapshot()
        store = database.store(migrate=False)
        await store.open()
        try:
            assert await database.snapshot() == before  # opening wrote nothing
            await store.open()
            assert await store.get_workflow("w-1") == workflow()
            assert (await store.create_workflow(workflow("w-2")))[1]
            assert await store.count_workflows() != {}
        finally:
            await store.close()
        reopened = database.store(migrate=True)
        await reopened.open()
        try:
            assert await reopened.get_workflow("w-2") == workflow("w-2")
        finally:
            await reopened.close()

    async def test_an_older_schema_is_refused_unchanged(self, database: Database) -> None:
        """An older durably's schema is not migrated (its apps would stop): the error
        says so and what to do; an app of this version then migrates it as usual."""
        await database.record_older_schema()
        before = await database.snapshot()
        store = database.store(migrate=False)
        with pytest.raises(SchemaVersionError, match="older") as refused:
            await store.open()
        assert "Upgrade durably in those apps" in str(refused.value)
        assert await database.snapshot() == before
        app_store = database.store(migrate=True)
        await app_store.open()
        await app_store.close()
        now_current = database.store(migrate=False)
        await now_current.open()
        await now_current.close()

    async def test_a_newer_schema_is_refused_unchanged(self, database: Database) -> None:
        """A newer durably's schema is refused with the advice to upgrade durably."""
        await database.record_newer_schema()
        before = await database.snapshot()
        with pytest.raises(SchemaVersionError, match="newer durably"):
            await database.store(migrate=False).open()
        assert await database.snapshot() == before

"""Every store passes the store contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durably import MemoryStore, SqliteStore, Store
from durably.testing import StoreContract


class TestMemoryStore(StoreContract):
    """The reference store."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        """An empty MemoryStore."""
        store = MemoryStore()
        await store.open()
        yield store
        await store.close()


class TestSqliteStore(StoreContract):
    """The SQLite store, on a real file."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        """An empty SQLite file."""
        store = SqliteStore(tmp_path / "contract.db")
        await store.open()
        yield store
        await store.close()

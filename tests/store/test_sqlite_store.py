"""SqliteStore passes the store contract, on a real file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durably.store import SqliteStore, Store
from durably.testing import StoreContract


class TestSqliteStore(StoreContract):
    """The SQLite store."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        """An empty, open SQLite file."""
        store = SqliteStore(tmp_path / "contract.db")
        await store.open()
        yield store
        await store.close()

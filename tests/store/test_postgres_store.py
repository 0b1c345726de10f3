"""PostgresStore passes the store contract, on the real server (a schema per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.conftest import postgres_url

from durably.store import Store
from durably.store.postgres import PostgresStore
from durably.testing import StoreContract


class TestPostgresStore(StoreContract):
    """The PostgreSQL store."""

    @pytest.fixture
    async def store(self, postgres_schema: str) -> AsyncIterator[Store]:
        """An empty, open schema."""
        store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=2)
        await store.open()
        yield store
        await store.close()

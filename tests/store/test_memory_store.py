"""MemoryStore passes the store contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from durably.store import MemoryStore, Store
from durably.testing import StoreContract
from durably.testing.store_contract import claimed, operation, send


class TestMemoryStore(StoreContract):
    """The reference store."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        """An empty, open MemoryStore."""
        store = MemoryStore()
        await store.open()
        yield store
        await store.close()


async def test_records_handed_out_cannot_change_the_store() -> None:
    """Lists and histories are fresh copies: mutating them leaves the store intact."""
    store = MemoryStore()
    fence = await claimed(store)
    await store.record_operation(fence, operation())
    await send(store)
    history = await store.load_history("w-1")
    history.operations.clear()
    history.attempts[0] = []
    (await store.list_signals("w-1")).clear()
    (await store.list_workflows()).clear()
    assert 0 in (await store.load_history("w-1")).operations
    assert 0 not in (await store.load_history("w-1")).attempts
    assert len(await store.list_signals("w-1")) == 1
    assert len(await store.list_workflows()) == 1

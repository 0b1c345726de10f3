"""PostgresStore passes the store contract, on the real server (a schema per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.conftest import postgres_url

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

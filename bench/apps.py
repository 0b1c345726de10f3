"""durably's side of every workload: stores and apps built from a sample's location.

Imported only in durably's child processes (never by the DBOS driver).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durably import Durably, MemoryStore, SqliteStore, Store


def make_store(where: dict[str, Any], *, pool_size: int = 10) -> Store:
    """The store of a sample's location (see :meth:`bench.suite.Bench.location`);
    ``{"kind": "memory"}``: a :class:`~durably.MemoryStore` (nothing is stored: what
    is measured is the engine alone)."""
    if where["kind"] == "memory":
        return MemoryStore()
    if where["kind"] == "sqlite":
        return SqliteStore(where["path"], synchronous=where["synchronous"])
    from durably.store.postgres import PostgresStore

    return PostgresStore(where["url"], schema=where["schema"], pool_size=pool_size)


def make_app(where: dict[str, Any], **options: Any) -> Durably:
    """An app on the sample's store with durably's defaults, unless ``options`` say."""
    pool_size = options.pop("pool_size", 10)
    options.setdefault("lease_duration", timedelta(seconds=30))
    return Durably(make_store(where, pool_size=pool_size), **options)


async def trivial(value: int) -> int:
    """The trivial step: what is measured is everything around it."""
    return value + 1

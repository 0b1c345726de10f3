"""Shared fixtures: the ``store`` fixture runs engine tests against every store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from durably import Durably, MemoryStore, SqliteStore, Store
from durably.testing import FakeClock

STORE_KINDS = ["memory", "sqlite"]


def make_store(kind: str, directory: Path) -> Store:
    """A fresh, unopened store of the given kind."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore(directory / "durably.db")
    raise AssertionError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The kind of store a test runs against."""
    return str(request.param)


@pytest.fixture
def store_factory(store_kind: str, tmp_path: Path) -> Callable[[], Store]:
    """Makes stores sharing one database (the same MemoryStore, or the same file)."""
    shared: dict[str, Store] = {}

    def factory() -> Store:
        if store_kind == "memory":
            return shared.setdefault("memory", MemoryStore())
        return make_store(store_kind, tmp_path)

    return factory


@pytest.fixture
def clock() -> FakeClock:
    """A virtual clock: durable sleeps and timeouts advance only when a test says so."""
    return FakeClock()


@pytest.fixture
def app_factory(store_factory: Callable[[], Store], clock: FakeClock) -> Callable[..., Durably]:
    """Makes apps on the shared store with the virtual clock (override with kwargs)."""

    def factory(**options: Any) -> Durably:
        options.setdefault("clock", clock)
        return Durably(store_factory(), **options)

    return factory


@pytest.fixture
async def app(app_factory: Callable[..., Durably]) -> AsyncIterator[Durably]:
    """An open app (workflows may be registered after opening)."""
    durably_app = app_factory()
    async with durably_app:
        yield durably_app


def postgres_url() -> str:
    """The PostgreSQL server used by tests that need one."""
    return os.environ.get("DURABLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

"""Shared fixtures: the ``store`` fixture runs engine tests against every store."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durably import Durably, MemoryStore, SqliteStore, Store
from durably.testing import FakeClock

STORE_KINDS = ["memory", "sqlite", "postgres"]


def postgres_url() -> str:
    """The PostgreSQL server used by tests that need one."""
    return os.environ.get("DURABLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]'"
    try:
        with psycopg.connect(postgres_url(), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"no PostgreSQL server at {postgres_url()} ({error})"
    return None


_POSTGRES_PROBLEM: list[str | None] = []


def require_postgres() -> str:
    """The server's URL; skip loudly when there is none, but fail under CI=true."""
    if not _POSTGRES_PROBLEM:
        _POSTGRES_PROBLEM.append(_postgres_unavailable())
    problem = _POSTGRES_PROBLEM[0]
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {problem}")
        pytest.skip(f"SKIPPING POSTGRESQL TESTS: {problem}; set DURABLY_TEST_POSTGRES_URL")
    return postgres_url()


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A new, empty PostgreSQL schema name for one test, dropped afterwards."""
    import psycopg
    from psycopg import sql

    url = require_postgres()
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield schema
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def make_store(kind: str, directory: Path, schema: str | None = None) -> Store:
    """A fresh, unopened store of the given kind."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore(directory / "durably.db")
    if kind == "postgres":
        from durably.store.postgres import PostgresStore

        assert schema is not None
        return PostgresStore(postgres_url(), schema=schema, pool_size=4)
    raise AssertionError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The kind of store a test runs against."""
    return str(request.param)


@pytest.fixture
def store_factory(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], Store]:
    """Makes stores sharing one database (the same MemoryStore, file or schema)."""
    shared: dict[str, Store] = {}
    schema = request.getfixturevalue("postgres_schema") if store_kind == "postgres" else None

    def factory() -> Store:
        if store_kind == "memory":
            return shared.setdefault("memory", MemoryStore())
        return make_store(store_kind, tmp_path, schema)

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

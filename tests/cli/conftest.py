"""Fixtures of the CLI tests: a database per test (a SQLite file, or a PostgreSQL
schema), workflows recorded in it by a real app, and the real ``durably`` console
script run in a subprocess against it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cli_workflows import Order, build_app

import durably
from durably.models import WorkflowStatus
from durably.store import open_store

HERE = Path(__file__).parent
T = TypeVar("T")

#: The installed console script when there is one (pip install -e .), else the module.
_SCRIPT = Path(sys.executable).with_name("durably")
DURABLY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "durably"]

_POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def _skip_or_fail(problem: str) -> None:
    """A missing server fails under CI=true and skips loudly elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {problem}")
    pytest.skip(f"SKIPPING POSTGRESQL CLI TESTS: {problem}; set DURABLY_TEST_POSTGRES_URL")


def _postgres_schema() -> Iterator[str]:
    """The URL of a new PostgreSQL schema for one test (``?schema=``), dropped after."""
    server = os.environ.get("DURABLY_TEST_POSTGRES_URL", _POSTGRES_DEFAULT)
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        _skip_or_fail("psycopg is not installed: pip install -e '.[test]'")
    try:
        with psycopg.connect(server, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        _skip_or_fail(f"no PostgreSQL server at {server} ({error})")
    schema = f"cli_{uuid.uuid4().hex[:16]}"
    yield f"{server}{'&' if '?' in server else '?'}schema={schema}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, migrated database for one test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'workflows.db'}"
        asyncio.run(_create(url))
        yield url
    else:
        for url in _postgres_schema():
            asyncio.run(_create(url))
            yield url


async def _create(url: str) -> None:
    store = open_store(url)
    await store.open()
    await store.close()


@dataclass(frozen=True)
class Cli:
    """Runs the ``durably`` console script against one database."""

    url: str

    def __call__(
        self, *arguments: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``durably ARGUMENTS --db URL`` from this directory (so ``--app
        cli_workflows:app`` imports); return the finished process."""
        return subprocess.run(
            [*DURABLY, *arguments, "--db", self.url],
            cwd=HERE,
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **(env or {})},
        )

    def json(self, *arguments: str) -> Any:
        """Run with ``--json``; require success and return the parsed document."""
        completed = self(*arguments, "--json")
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)


def run_durably(
    arguments: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script with exactly ``arguments`` (no --db added)."""
    return subprocess.run(
        [*DURABLY, *arguments],
        cwd=HERE,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli(store_url: str) -> Cli:
    """The console script on this test's database (SQLite, then PostgreSQL)."""
    return Cli(store_url)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    """The console script on a SQLite file, for behaviour that no store changes
    (parsing, usage errors)."""
    url = f"sqlite:///{tmp_path / 'workflows.db'}"
    asyncio.run(_create(url))
    return Cli(url)


def record(
    url: str, scenario: Callable[[durably.Durably], Coroutine[Any, Any, T]], **options: Any
) -> T:
    """Run ``scenario`` with an open app on ``url`` (workflows of ``cli_workflows``)."""

    async def run() -> T:
        async with build_app(url, **options) as app, asyncio.timeout(60):
            return await scenario(app)

    return asyncio.run(run())


async def until_status(app: durably.Durably, workflow_id: str, *statuses: WorkflowStatus) -> None:
    """Wait (on the app's change notifications) until the workflow is in a status."""
    async for info in app.watch(workflow_id):
        if info.status in statuses:
            return
    raise AssertionError(f"{workflow_id} finished without reaching {statuses}")


async def start_waiting_approval(app: durably.Durably, workflow_id: str) -> None:
    """An ``approval`` suspended on its signal wait (operations #0 and #1 recorded)."""
    await app.start("approval", Order(workflow_id, 4200), workflow_id=workflow_id)
    await until_status(app, workflow_id, WorkflowStatus.SUSPENDED)


async def finish(app: durably.Durably, name: str, workflow_id: str) -> WorkflowStatus:
    """Run a workflow that ends by itself; return its final status."""
    handle = await app.start(name, Order(workflow_id, 100), workflow_id=workflow_id)
    try:
        await handle.result()
    except durably.WorkflowFailedError as error:
        return WorkflowStatus(error.status)
    return WorkflowStatus.COMPLETED


def park(url: str, workflow_id: str) -> None:
    """A workflow PARKED on non-determinism, as a real deployment makes one: it waits
    under the recorded code, then the changed code replays it when a signal arrives."""
    record(url, lambda app: start_waiting_approval(app, workflow_id))

    async def signal_with_changed_code(app: durably.Durably) -> None:
        await app.send_signal(workflow_id, "approved", "ann")
        with pytest.raises(durably.WorkflowFailedError):
            await app.handle(workflow_id).result()

    record(url, signal_with_changed_code, variant="changed")

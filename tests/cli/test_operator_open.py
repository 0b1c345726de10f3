"""Operator commands open the database as it is: a mistyped path or schema, a file
that holds no workflows, a schema of another durably version, an unreachable server
are refused with one clear error, and nothing is created, migrated or changed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from conftest import run_durably
from durably.store.postgres import PostgresStore
from durably.store.postgres._migrate import latest_version, migrate, schema_version
from durably.store.sqlite import _migrate as sqlite_migrate
from durably.testing._contract.existing import ExistingDatabaseContract

#: Every command that takes --db, with the arguments it needs besides it.
OPERATOR_COMMANDS = [
    ["list"],
    ["show", "order-1"],
    ["signal", "order-1", "approved", '"ann"'],
    ["cancel", "order-1"],
    ["resume", "order-1"],
    ["retry", "order-1", "--from-step", "0"],
    ["purge", "--older-than", "30d"],
    ["doctor"],
    ["dashboard", "--port", "0"],
]


def postgres_url() -> str:
    """The server of the root conftest's ``postgres_schema`` fixture."""
    return os.environ.get("DURABLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    """The test server's URL with ``?schema=``."""
    server = postgres_url()
    return f"{server}{'&' if '?' in server else '?'}schema={schema}"


class PostgresDatabase:
    """A PostgreSQL schema name that nothing has created yet."""

    def __init__(self, schema: str) -> None:
        self.url = postgres_url()
        self.schema = schema

    def store(self, *, migrate: bool) -> PostgresStore:
        """A new store on the schema."""
        return PostgresStore(self.url, schema=self.schema, pool_size=2, migrate=migrate)

    async def _connect(self) -> psycopg.AsyncConnection[dict[str, object]]:
        return await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, row_factory=dict_row
        )

    async def record_older_schema(self) -> None:
        """The schema of the version before the latest."""
        async with await self._connect() as connection:
            await migrate(connection, self.schema, up_to=latest_version() - 1)

    async def record_newer_schema(self) -> None:
        """The latest schema, recorded as the version after it."""
        async with await self._connect() as connection:
            await migrate(connection, self.schema)
            await connection.execute(
                sql.SQL("UPDATE {} SET version = %s").format(
                    sql.Identifier(self.schema, "schema_version")
                ),
                (latest_version() + 1,),
            )

    async def snapshot(self) -> object:
        """Whether the schema exists, its tables' columns, its recorded version."""
        async with await self._connect() as connection:
            cursor = await connection.execute(
                "SELECT count(*) AS found FROM pg_namespace WHERE nspname = %s", (self.schema,)
            )
            exists = (await cursor.fetchone() or {}).get("found")
            cursor = await connection.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = %s ORDER BY table_name, ordinal_position",
                (self.schema,),
            )
            columns = [(row["table_name"], row["column_name"]) for row in await cursor.fetchall()]
            return exists, columns, await schema_version(connection, self.schema)


class TestPostgresExistingDatabase(ExistingDatabaseContract):
    """PostgresStore(migrate=False) passes the contract of opening without migrating."""

    @pytest.fixture
    def database(self, postgres_schema: str) -> PostgresDatabase:
        """A schema that does not exist yet (dropped after the test)."""
        return PostgresDatabase(postgres_schema)


def schema_exists(schema: str) -> bool:
    """Whether the test server has this schema."""
    with psycopg.connect(postgres_url()) as connection:
        row = connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return row is not None


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=lambda command: command[0])
def test_a_mistyped_postgres_schema_is_refused_and_not_created(
    command: list[str], postgres_schema: str
) -> None:
    """Exit 2, an error that names the schema and what to check, and no schema made."""
    completed = run_durably([*command, "--db", schema_url(postgres_schema)])
    assert completed.returncode == 2, completed.stderr
    assert f"no durably tables in schema '{postgres_schema}'" in completed.stderr
    assert "?schema=" in completed.stderr and "durably worker" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""
    assert not schema_exists(postgres_schema)


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=lambda command: command[0])
def test_an_empty_sqlite_file_is_refused_and_left_as_it_was(
    command: list[str], tmp_path: Path
) -> None:
    """Exit 2, the path and what to do; the file keeps its 0 bytes and gets no
    -wal or -shm beside it."""
    path = tmp_path / "empty.db"
    path.touch()
    completed = run_durably([*command, "--db", f"sqlite:///{path}"])
    assert completed.returncode == 2, completed.stderr
    assert f"{path} holds no durably tables" in completed.stderr
    assert "Check the path" in completed.stderr and "durably worker" in completed.stderr
    assert completed.stdout == ""
    assert path.read_bytes() == b""
    assert os.listdir(tmp_path) == ["empty.db"]


@pytest.mark.parametrize("command", [["list"], ["dashboard", "--port", "0"]], ids=str)
def test_a_file_that_is_not_sqlite_is_refused_clearly(command: list[str], tmp_path: Path) -> None:
    """Exit 2 (a bad --db), saying it is not a SQLite database; the file is untouched."""
    path = tmp_path / "notes.db"
    path.write_text("shopping list: eggs, milk\n" * 200, encoding="utf-8")
    before = path.read_bytes()
    completed = run_durably([*command, "--db", f"sqlite:///{path}"])
    assert completed.returncode == 2, completed.stderr
    assert f"{path} is not a SQLite database" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert path.read_bytes() == before


def test_an_older_sqlite_schema_is_refused_not_migrated(tmp_path: Path) -> None:
    """Exit 1 with what to do; the file keeps its older version."""
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        sqlite_migrate.migrate(connection, up_to=sqlite_migrate.latest_version() - 1)
    finally:
        connection.close()
    before = path.read_bytes()
    completed = run_durably(["list", "--db", f"sqlite:///{path}"])
    assert completed.returncode == 1, completed.stderr
    assert "older than version" in completed.stderr
    assert "Upgrade durably in those apps" in completed.stderr
    assert path.read_bytes() == before


def test_an_older_postgres_schema_is_refused_not_migrated(postgres_schema: str) -> None:
    """Exit 1 with what to do; the schema keeps its older version."""
    database = PostgresDatabase(postgres_schema)
    asyncio.run(database.record_older_schema())
    before = asyncio.run(database.snapshot())
    completed = run_durably(["list", "--db", schema_url(postgres_schema)])
    assert completed.returncode == 1, completed.stderr
    assert "older than version" in completed.stderr
    assert asyncio.run(database.snapshot()) == before


def test_the_dashboard_on_an_unreachable_server_fails_before_printing_anything() -> None:
    """One error line (exit 1, as every command on a database that fails), no banner,
    no token, no server traceback."""
    completed = run_durably(
        ["dashboard", "--port", "0", "--db", "postgresql://postgres@127.0.0.1:1/test"]
    )
    assert completed.returncode == 1, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr.startswith("Error: cannot open the PostgreSQL store at")
    assert "Traceback" not in completed.stderr

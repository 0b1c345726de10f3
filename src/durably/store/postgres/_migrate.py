"""Numbered, forward-only migrations of the PostgreSQL schema, versioned in a table.

The store's tables live in their own PostgreSQL schema (default ``durably``). Its
``schema_version`` table holds one row: the version of the last migration applied.
Migration ``NNNN_description.sql`` in ``migrations/`` brings the schema from version
``NNNN - 1`` to ``NNNN``; a released migration is never edited.

Workers starting together are serialised by a transaction-scoped advisory lock: the
first migrates, the others find the schema current.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow

from durably.errors import ConfigurationError, SchemaVersionError

_PACKAGE = "durably.store.postgres"
_FILE_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the version it produces and its script."""

    version: int
    name: str
    script: str


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """Every migration, in version order.

    Raises:
        RuntimeError: the versions do not run 1, 2, ... without a gap (a packaging bug).
    """
    found = [
        Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8"))
        for entry in resources.files(_PACKAGE).joinpath("migrations").iterdir()
        if (match := _FILE_NAME.match(entry.name)) is not None
    ]
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"PostgreSQL migrations must be numbered 1, 2, ... got {versions}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this code writes."""
    return migrations()[-1].version


async def schema_version(connection: AsyncConnection[DictRow], schema: str) -> int:
    """The version recorded in ``schema`` (0 when the schema or its table is missing)."""
    cursor = await connection.execute(
        "SELECT to_regclass(%s) IS NOT NULL AS present",
        (sql.Identifier(schema, "schema_version").as_string(connection),),
    )
    row = await cursor.fetchone()
    if row is None or not row["present"]:
        return 0
    cursor = await connection.execute(
        sql.SQL("SELECT version FROM {} LIMIT 1").format(sql.Identifier(schema, "schema_version"))
    )
    version = await cursor.fetchone()
    return 0 if version is None else int(version["version"])


def refuse_newer(current: int, schema: str) -> None:
    """Raise when the schema was written by a newer durably.

    Raises:
        SchemaVersionError: ``current`` is beyond what this code knows.
    """
    latest = latest_version()
    if current > latest:
        raise SchemaVersionError(
            f"the PostgreSQL schema {schema!r} is version {current}, but this durably only "
            f"knows versions up to {latest}: it was written by a newer durably; upgrade "
            f"durably (pip install --upgrade 'durably[postgres]'). Nothing was changed."
        )


#: The schemas of a database that hold durably's tables (named in a refusal).
_DURABLY_SCHEMAS = """
    SELECT table_schema AS name FROM information_schema.tables
    WHERE table_name IN ('schema_version', 'workflows')
    GROUP BY table_schema HAVING count(DISTINCT table_name) = 2
    ORDER BY table_schema <> 'durably', table_schema LIMIT 6
"""


async def require_current(connection: AsyncConnection[DictRow], schema: str, where: str) -> None:
    """Refuse, without changing anything, a schema that is not exactly this code's:
    what a store that must not migrate checks before it opens.

    Args:
        connection: A connection to the database.
        schema: The PostgreSQL schema of durably's tables.
        where: The database, as messages name it.

    Raises:
        ConfigurationError: ``schema`` holds no durably tables (a mistyped schema, or
            a database no durably app has opened yet); the message names the schemas
            that do.
        SchemaVersionError: the schema is older or newer than this code's.
    """
    current = await schema_version(connection, schema)
    if current == 0:
        cursor = await connection.execute(_DURABLY_SCHEMAS)
        found = [str(row["name"]) for row in await cursor.fetchall()]
        listed = ", ".join(repr(name) for name in found[:5]) + (", …" if len(found) > 5 else "")
        others = (
            f"schemas with durably tables there: {listed}"
            if found
            else "no schema there has durably tables"
        )
        raise ConfigurationError(
            f"the PostgreSQL database {where} has no durably tables in schema {schema!r} "
            f"({others}). Check the URL and its ?schema= (default: durably), or start an "
            f"app or `durably worker` on it first (it creates the tables). Nothing was "
            f"changed."
        )
    refuse_newer(current, schema)
    latest = latest_version()
    if current < latest:
        raise SchemaVersionError(
            f"the PostgreSQL schema {schema!r} is version {current}, older than version "
            f"{latest} of this durably, and it was opened without migrating: migrating it "
            f"here would stop the apps that still run the older durably. Upgrade durably in "
            f"those apps (an app migrates the schema when it opens it), or use the durably "
            f"version they run. Nothing was changed."
        )


async def migrate(
    connection: AsyncConnection[DictRow], schema: str, *, up_to: int | None = None
) -> int:
    """Create ``schema`` if needed and apply every missing migration (up to version
    ``up_to``), in one transaction under an advisory lock.

    Returns:
        The schema version now in the database.

    Raises:
        SchemaVersionError: the schema is newer than this code (nothing is changed).
    """
    target = latest_version() if up_to is None else up_to
    async with connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"durably-migrate:{schema}",)
        )
        current = await schema_version(connection, schema)
        refuse_newer(current, schema)
        if current >= target:
            return current
        name = sql.Identifier(schema)
        await connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
        await connection.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
        )
        for migration in migrations():
            if current < migration.version <= target:
                # A whole script per execute: no parameters, so psycopg sends it as is.
                await connection.execute(sql.SQL(migration.script))
                current = migration.version
        await connection.execute("DELETE FROM schema_version")
        await connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (current,))
    return current

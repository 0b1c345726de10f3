"""Numbered, forward-only migrations of the SQLite schema, versioned in user_version."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

from durably.errors import SchemaVersionError

_PACKAGE = "durably.store.sqlite"
_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


def migrations() -> list[tuple[int, str]]:
    """Every migration as ``(version, sql)``, in order."""
    directory = resources.files(_PACKAGE).joinpath("migrations")
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_version() -> int:
    """The schema version this code writes."""
    return migrations()[-1][0]


def check_version(connection: sqlite3.Connection) -> int:
    """The database's schema version; refuse one newer than this code.

    Call it before changing anything (even pragmas such as the journal mode, which
    rewrite the file header), so that a refused database is left untouched.

    Raises:
        SchemaVersionError: the database is newer than this code.
    """
    current = int(connection.execute("PRAGMA user_version").fetchone()[0])
    latest = latest_version()
    if current > latest:
        raise SchemaVersionError(
            f"the database schema is version {current}, newer than this durably "
            f"supports ({latest}): upgrade durably (pip install -U durably) to open it"
        )
    return current


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to date in one ``BEGIN IMMEDIATE`` transaction.

    Returns:
        The schema version now in the database.

    Raises:
        SchemaVersionError: the database is newer than this code (nothing is changed).
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        current = check_version(connection)
        latest = latest_version()
        for version, sql in migrations():
            if version > current:
                for statement in _statements(sql):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {int(version)}")
        connection.execute("COMMIT")
        return max(current, latest)
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our DDL's strings)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]

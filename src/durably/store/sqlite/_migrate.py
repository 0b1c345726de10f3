"""Numbered, forward-only migrations of the SQLite schema, versioned in user_version.

Migration ``NNNN_description.sql`` in ``migrations/`` brings the schema from version
``NNNN - 1`` to ``NNNN``. Versions start at 1 and have no gaps. A migration is never
edited once released: a change of schema is a new file.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from durably.errors import ConfigurationError, SchemaVersionError, StoreError

_PACKAGE = "durably.store.sqlite"
_FILE_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the version it produces and its statements."""

    version: int
    name: str
    statements: tuple[str, ...]


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """Every migration, in version order.

    Raises:
        RuntimeError: the versions do not run 1, 2, ... without a gap (a packaging bug).
    """
    found: list[Migration] = []
    for entry in resources.files(_PACKAGE).joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is not None:
            sql = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match.group(1)), entry.name, split_statements(sql)))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"SQLite migrations must be numbered 1, 2, ... got {versions}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this code writes."""
    return migrations()[-1].version


def split_statements(sql: str) -> tuple[str, ...]:
    """Split a script into complete statements, as SQLite itself would."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending!r}")
    return tuple(statements)


def schema_version(connection: sqlite3.Connection) -> int:
    """The version recorded in the database (0 for a new, empty file)."""
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def check_version(connection: sqlite3.Connection) -> int:
    """The database's schema version, refusing one newer than this code, or one that
    does not match the tables (which migrating from would fail or damage).

    Call it before anything that writes, pragmas included (``journal_mode = WAL``
    rewrites the file header), so that a refused database is left untouched.

    Raises:
        SchemaVersionError: the database was written by a newer durably, or its
            recorded version is not the version of its tables.
    """
    owns_transaction = not connection.in_transaction
    if owns_transaction:  # the version and the tables, read from one snapshot
        connection.execute("BEGIN")
    try:
        current = schema_version(connection)
        latest = latest_version()
        if current > latest:
            raise SchemaVersionError(
                f"the database schema is version {current}, but this durably only knows "
                f"versions up to {latest}: the file was written by a newer durably; upgrade "
                f"durably (pip install --upgrade durably) to open it. The file was not changed."
            )
        if current < latest:
            _check_tables_match(connection, current)
    finally:
        if owns_transaction:
            connection.execute("ROLLBACK")
    return current


Shape = frozenset[tuple[str, str, tuple[str, ...]]]


def _shape(connection: sqlite3.Connection, names: frozenset[str] | None = None) -> Shape:
    """The schema objects (type, name, and a table's columns) of a database; only those
    named in ``names`` when given (a user's own tables are not durably's business)."""
    found: set[tuple[str, str, tuple[str, ...]]] = set()
    for kind, name in connection.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall():
        if names is not None and name not in names:
            continue
        columns: tuple[str, ...] = ()
        if kind == "table":
            rows = connection.execute("SELECT name FROM pragma_table_info(?)", (name,))
            columns = tuple(str(column) for (column,) in rows.fetchall())
        found.add((str(kind), str(name), columns))
    return frozenset(found)


@functools.cache
def schema_shapes() -> tuple[Shape, ...]:
    """The schema objects at each version, 0 (an empty file) to the latest."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        shapes = [_shape(connection)]
        for migration in migrations():
            for statement in migration.statements:
                connection.execute(statement)
            shapes.append(_shape(connection))
    finally:
        connection.close()
    return tuple(shapes)


def _check_tables_match(connection: sqlite3.Connection, current: int) -> None:
    shapes = schema_shapes()
    known = frozenset(name for shape in shapes for _, name, _ in shape)
    found = _shape(connection, known)
    if found == shapes[current]:
        return
    matching = [version for version, shape in enumerate(shapes) if shape == found]
    if matching:
        tables = f"its tables are those of version {matching[-1]}"
        remedy = (
            f"restore the file from a backup, or, if you know that nothing else changed, set "
            f"the version back with: sqlite3 <database file> 'PRAGMA user_version = "
            f"{matching[-1]}'"
        )
    else:
        tables = "its tables match no version of durably's schema"
        remedy = "restore the file from a backup"
    raise SchemaVersionError(
        f"the database records schema version {current} (PRAGMA user_version), but "
        f"{tables}: the version or the tables were changed outside durably (by a tool, a "
        f"restored file header, a copied file), and migrating from version {current} "
        f"would fail or damage the data. The file was not changed; {remedy}."
    )


def require_current(connection: sqlite3.Connection, where: str) -> None:
    """Refuse, without changing anything, a database that does not hold this code's
    schema exactly: what a store that must not migrate checks before it opens.

    Args:
        connection: A connection that has written nothing.
        where: The database, as messages name it.

    Raises:
        ConfigurationError: no durably table at all (a new file, or another
            program's database).
        SchemaVersionError: the schema is older or newer than this code's, or its
            recorded version does not match its tables.
    """
    connection.execute("BEGIN")  # the tables and the version, read from one snapshot
    try:
        known = frozenset(name for shape in schema_shapes() for _, name, _ in shape)
        if not _shape(connection, known):
            raise ConfigurationError(
                f"{where} holds no durably tables: it is not a workflow database, or no "
                f"durably app has opened it yet (an app or `durably worker` creates the "
                f"tables on its first start). Check the path. The file was not changed."
            )
        current = check_version(connection)
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
    latest = latest_version()
    if current < latest:
        raise SchemaVersionError(
            f"{where} has durably schema version {current}, older than version {latest} "
            f"of this durably, and it was opened without migrating: migrating it here "
            f"would stop the apps that still run the older durably. Upgrade durably in "
            f"those apps (an app migrates the database when it opens it), or use the "
            f"durably version they run. The file was not changed."
        )


def migrate(connection: sqlite3.Connection, *, up_to: int | None = None) -> int:
    """Apply every missing migration (up to version ``up_to``) in one
    ``BEGIN IMMEDIATE`` transaction; nothing when the schema is current.

    Two processes opening a new file at once are serialised by the write lock: the
    second finds the schema current.

    Foreign keys are off while migrations run, as SQLite's procedure for changing a
    table requires (``PRAGMA foreign_keys`` cannot change inside a transaction):
    rebuilding a parent table drops the old one, and with foreign keys on that would
    delete every child row. Before committing, ``PRAGMA foreign_key_check`` must find
    no row without its parent; the connection's setting is restored afterwards.

    Returns:
        The schema version now in the database.

    Raises:
        SchemaVersionError: the database is newer than this code (nothing is changed).
        StoreError: after the migrations, rows refer to missing parents (nothing is
            changed).
    """
    target = latest_version() if up_to is None else up_to
    foreign_keys = bool(connection.execute("PRAGMA foreign_keys").fetchone()[0])
    connection.execute("PRAGMA foreign_keys = OFF")
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            current = check_version(connection)
            applied = False
            for migration in migrations():
                if current < migration.version <= target:
                    for statement in migration.statements:
                        connection.execute(statement)
                    # PRAGMA takes no bound parameters; the version is an int from a name.
                    connection.execute(f"PRAGMA user_version = {migration.version:d}")
                    current, applied = migration.version, True
            if applied:
                _require_parents(connection, current)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    finally:
        connection.execute(
            "PRAGMA foreign_keys = ON" if foreign_keys else "PRAGMA foreign_keys = OFF"
        )
    return current


def _require_parents(connection: sqlite3.Connection, version: int) -> None:
    """Refuse to commit migrations that leave a row referring to a missing parent."""
    orphans = connection.execute("PRAGMA foreign_key_check").fetchall()
    if orphans:
        tables = sorted({str(row[0]) for row in orphans})
        raise StoreError(
            f"migrating the database to schema version {version} found {len(orphans)} "
            f"row(s) in {', '.join(tables)} whose workflow is missing (were rows deleted "
            f"with foreign keys off, by another tool?); the migration was rolled back and "
            f"the file was not changed. Delete those rows (PRAGMA foreign_key_check lists "
            f"them) and open the store again."
        )

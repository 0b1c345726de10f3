"""Opening the store an operator names: never a new, empty database by mistake."""

from __future__ import annotations

from durably.errors import ConfigurationError
from durably.store import MemoryStore, SqliteStore, Store, open_store


def open_operator_store(url: str) -> Store:
    """The store named by ``url``, not yet opened, that never creates or migrates
    anything: opening it refuses a database without durably's tables, and a schema
    older or newer than this code's, changing nothing (``migrate=False``).

    An operator command that found a mistyped path or schema empty would hide the
    mistake, and one that migrated would do so under the apps that still run the older
    durably. ``memory://`` (empty in a new process) and a SQLite file that does not
    exist are refused here already.

    Raises:
        ConfigurationError: such a URL, or one that names no store (the message says
            which forms are accepted).
    """
    try:
        store = open_store(url, migrate=False)
    except (ImportError, AttributeError) as error:  # an incomplete store extra
        raise ConfigurationError(f"cannot open a store for {url!r}: {error}") from error
    if isinstance(store, MemoryStore):
        raise ConfigurationError(
            "memory:// is empty in a new process; give the database your app uses"
        )
    if isinstance(store, SqliteStore) and not store.path.is_file():
        raise ConfigurationError(
            f"no database file at {store.path.resolve()} (from {url!r}); check the path "
            f"(sqlite:///relative.db, sqlite:////absolute.db): operator commands never "
            f"create a database"
        )
    return store

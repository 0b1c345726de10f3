"""Opening the store an operator names: never a new, empty database by mistake."""

from __future__ import annotations

from durably.errors import ConfigurationError
from durably.store import MemoryStore, SqliteStore, Store, open_store


def open_operator_store(url: str) -> Store:
    """The store named by ``url``, not yet opened, refusing what an operator never
    means: ``memory://`` (empty in a new process) or a SQLite file that does not exist
    (opening it would create an empty database).

    Raises:
        ConfigurationError: such a URL, or one that names no store (the message says
            which forms are accepted).
    """
    try:
        store = open_store(url)
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

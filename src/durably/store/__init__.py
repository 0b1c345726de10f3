"""Stores: where workflows are recorded. ``open_store(url)`` picks one by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from durably.errors import ConfigurationError
from durably.store.base import Store
from durably.store.memory import MemoryStore
from durably.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "open_store"]

_ACCEPTED = (
    "'sqlite:///relative.db', 'sqlite:////absolute/path.db' (optionally "
    "'?synchronous=FULL'), a path ending in .db/.sqlite/.sqlite3, 'memory://' or "
    "'postgresql://user@host/db'"
)


def open_store(url: str) -> Store:
    """The store a URL names (not yet opened).

    Raises:
        ConfigurationError: the URL is not understood, or its extra is not installed.
    """
    if url == "memory://":
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from durably.store.postgres import PostgresStore  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigurationError(
                "PostgreSQL support is not installed: pip install 'durably[postgres]'"
            ) from None
        return PostgresStore(url)  # type: ignore[no-any-return]
    if url.startswith("sqlite://"):
        parts = urlsplit(url)
        if parts.netloc:
            raise ConfigurationError(
                f"SQLite URL {url!r} has a host part; use three slashes for a relative path "
                f"(sqlite:///app.db) or four for an absolute one (sqlite:////var/app.db)"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path or path == ":memory:":
            raise ConfigurationError(
                f"SQLite URL {url!r} names no file: durably needs a file shared by its "
                f"writer and readers; use MemoryStore() (memory://) or a temporary file"
            )
        options = parse_qs(parts.query)
        synchronous = options.pop("synchronous", ["NORMAL"])[-1].upper()
        if options:
            raise ConfigurationError(
                f"unknown SQLite URL option(s) {sorted(options)} in {url!r}; "
                f"only synchronous=NORMAL|FULL is accepted"
            )
        return SqliteStore(path, synchronous=synchronous)
    if url.endswith((".db", ".sqlite", ".sqlite3")):
        return SqliteStore(Path(url))
    raise ConfigurationError(f"cannot open a store from {url!r}; accepted forms: {_ACCEPTED}")

"""Stores: where workflows are recorded. :func:`open_store` picks one from a URL.

Both built-in stores use only the standard library; the PostgreSQL store is an extra
(``pip install 'durably[postgres]'``), imported only when a PostgreSQL URL asks for it.
"""

from __future__ import annotations

import importlib
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from durably.errors import ConfigurationError
from durably.store.base import ChangeFeed, Store, StoreChange
from durably.store.memory import MemoryStore
from durably.store.sqlite import SqliteStore

__all__ = ["ChangeFeed", "MemoryStore", "SqliteStore", "Store", "StoreChange", "open_store"]

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_ACCEPTED_FORMS = (
    "'memory://'; 'sqlite:///relative/path.db' or 'sqlite:////absolute/path.db' "
    "(optionally with '?synchronous=FULL'); a file path ending in .db, .sqlite or "
    ".sqlite3; 'postgresql://user@host/database' (optionally with '?schema=name')"
)


def open_store(url: str, *, migrate: bool = True) -> Store:
    """The store that ``url`` names, not yet opened.

    Accepted forms:

    * ``"memory://"``: a new :class:`MemoryStore`;
    * ``"sqlite:///relative/path.db"`` or ``"sqlite:////absolute/path.db"``, with an
      optional ``?synchronous=FULL`` (default ``NORMAL``): a :class:`SqliteStore`;
    * a bare file path ending in ``.db``, ``.sqlite`` or ``.sqlite3``: the same;
    * ``"postgresql://..."`` or ``"postgres://..."``: a ``PostgresStore`` (an extra);
      ``?schema=name`` picks the PostgreSQL schema of its tables (default ``durably``).

    ``migrate=False`` makes a SQLite or PostgreSQL store that opens only a database
    already holding this code's schema and changes nothing otherwise (see
    :class:`SqliteStore`).

    Raises:
        ConfigurationError: the URL is not understood, or names a store whose extra
            is not installed.
    """
    if url == "memory://":
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        return _open_postgres(url, migrate)
    if url.startswith("sqlite:"):
        return _open_sqlite(url, migrate)
    if "://" not in url and url.lower().endswith(_SQLITE_SUFFIXES):
        return SqliteStore(url, migrate=migrate)
    raise ConfigurationError(f"cannot open a store from {url!r}; use one of: {_ACCEPTED_FORMS}")


def _open_sqlite(url: str, migrate: bool) -> SqliteStore:
    parts = urlsplit(url)
    if not url.startswith("sqlite://") or parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {url!r} is malformed: write sqlite:///relative/path.db (three "
            f"slashes) or sqlite:////absolute/path.db (four)"
        )
    path = parts.path.removeprefix("/")
    if not path:
        raise ConfigurationError(f"SQLite URL {url!r} names no file; use one of: {_ACCEPTED_FORMS}")
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"synchronous"})
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} in SQLite URL {url!r}; the only "
            f"option is synchronous=NORMAL|FULL"
        )
    synchronous = options.get("synchronous", ["NORMAL"])[-1]
    return SqliteStore(path, synchronous=synchronous, migrate=migrate)


def _open_postgres(url: str, migrate: bool) -> Store:
    try:
        module = importlib.import_module("durably.store.postgres")
    except ImportError as error:
        raise ConfigurationError(
            "PostgreSQL support is not installed: pip install 'durably[postgres]'"
        ) from error
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in options if key == "schema"]
    rest = urlencode([(key, value) for key, value in options if key != "schema"])
    store: Store = module.PostgresStore(
        urlunsplit(parts._replace(query=rest)),
        migrate=migrate,
        **({"schema": schemas[-1]} if schemas else {}),
    )
    return store

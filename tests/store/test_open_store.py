"""open_store: a URL names a store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from durably.errors import ConfigurationError
from durably.store import MemoryStore, SqliteStore, open_store


def test_memory_url_is_a_new_memory_store() -> None:
    """memory:// gives a fresh MemoryStore each time."""
    first, second = open_store("memory://"), open_store("memory://")
    assert isinstance(first, MemoryStore) and isinstance(second, MemoryStore)
    assert first is not second


@pytest.mark.parametrize(
    ("url", "path", "synchronous"),
    [
        ("sqlite:///app.db", "app.db", "NORMAL"),
        ("sqlite:///data/app.db", "data/app.db", "NORMAL"),
        ("sqlite:////var/lib/app.db", "/var/lib/app.db", "NORMAL"),
        ("sqlite:///app.db?synchronous=FULL", "app.db", "FULL"),
        ("sqlite:////var/lib/app.db?synchronous=full", "/var/lib/app.db", "FULL"),
        ("sqlite:///app.db?synchronous=NORMAL", "app.db", "NORMAL"),
        ("app.db", "app.db", "NORMAL"),
        ("data/app.sqlite", "data/app.sqlite", "NORMAL"),
        ("/var/lib/app.sqlite3", "/var/lib/app.sqlite3", "NORMAL"),
        ("APP.DB", "APP.DB", "NORMAL"),
    ],
)
def test_sqlite_urls_and_paths_name_a_file_and_a_durability_level(
    url: str, path: str, synchronous: str
) -> None:
    """Three slashes for a relative path, four for an absolute one, or a bare path."""
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert (store.path, store.synchronous) == (Path(path), synchronous)


def test_open_store_does_not_open_the_store(tmp_path: Path) -> None:
    """Nothing is created on disk until the store is opened."""
    open_store(f"sqlite:///{tmp_path}/later.db")
    assert not (tmp_path / "later.db").exists()


@pytest.mark.parametrize("url", ["postgresql://user@localhost/db", "postgres://localhost/db"])
def test_postgres_without_its_extra_says_what_to_install(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing PostgreSQL extra is a ConfigurationError naming the pip command."""
    monkeypatch.setitem(sys.modules, "durably.store.postgres", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'durably\[postgres\]'"):
        open_store(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "use one of"),
        ("workflows.txt", "use one of"),
        ("", "use one of"),
        ("memory", "use one of"),
        ("sqlite://host/app.db", "three slashes"),
        ("sqlite:app.db", "three slashes"),
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite:///app.db?journal_mode=OFF", "unknown option"),
        ("sqlite:///app.db?synchronous=OFF", "NORMAL or FULL"),
        ("sqlite:///:memory:", "MemoryStore"),
    ],
)
def test_a_bad_url_is_refused_with_the_accepted_forms(url: str, message: str) -> None:
    """ConfigurationError says what is wrong and what would work."""
    with pytest.raises(ConfigurationError, match=message):
        open_store(url)


def test_a_postgresql_url_may_name_the_schema() -> None:
    """?schema= is durably's option (taken out of the URL); other options reach libpq."""
    store = open_store("postgresql://app@db.example/prod?schema=billing&application_name=w1")
    assert (store.url, store.schema) == (  # type: ignore[attr-defined]
        "postgresql://app@db.example/prod?application_name=w1",
        "billing",
    )
    assert open_store("postgres://app@db.example/prod").schema == "durably"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url", ["sqlite:///app.db?synchronous=FULL", "app.sqlite", "postgresql://h/db?schema=s"]
)
def test_migrate_false_reaches_the_store(url: str) -> None:
    """open_store(url, migrate=False): a store that never migrates, the URL's other
    options kept (what operator commands open)."""
    pytest.importorskip("psycopg")
    store = open_store(url, migrate=False)
    assert store.migrate is False
    assert open_store(url).migrate is True
    if isinstance(store, SqliteStore):
        assert store.synchronous == ("FULL" if "FULL" in url else "NORMAL")
    else:
        assert store.schema == "s"

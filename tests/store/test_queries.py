"""The named-query loader, and the SQLite store's query file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from durably.store._queries import QueryFileError, load_queries
from durably.store.sqlite._migrate import migrate
from durably.store.sqlite.store import Q


def write_package(root: Path, name: str, text: str) -> str:
    """A throw-away package holding ``queries.sql``; returns its import name."""
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "queries.sql").write_text(text)
    return name


def test_queries_are_read_by_name_without_comments_or_semicolon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each block becomes name -> statement."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = write_package(
        tmp_path,
        "queries_ok",
        "-- file header\n\n-- name: first\n-- Says what it does.\nSELECT 1;\n\n"
        "-- name: second\n-- Two lines\n-- of description.\nSELECT :x\nFROM t;\n",
    )
    assert load_queries(package) == {"first": "SELECT 1", "second": "SELECT :x\nFROM t"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: a\nSELECT 1;\n", "no description"),
        ("-- name: a\n-- Nothing.\n", "no statement"),
        ("-- name: a\n-- A.\nSELECT 1;\n-- name: a\n-- Again.\nSELECT 2;\n", "twice"),
    ],
)
def test_a_malformed_query_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    """Missing descriptions, empty queries and repeated names are packaging bugs."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = write_package(tmp_path, f"queries_bad_{abs(hash(text))}", text)
    with pytest.raises(QueryFileError, match=message):
        load_queries(package)


def test_every_sqlite_query_compiles_against_the_schema(tmp_path: Path) -> None:
    """Each named statement is valid SQL for the current schema."""
    connection = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    try:
        migrate(connection)
        for name, sql in Q.items():
            parameters = {key: None for key in re.findall(r":(\w+)", sql)}
            try:
                connection.execute(f"EXPLAIN {sql}", parameters)
            except sqlite3.Error as error:  # pragma: no cover - the message names the query
                pytest.fail(f"query {name} does not compile: {error}")
    finally:
        connection.close()


def test_sqlite_queries_bind_values_and_never_format_them() -> None:
    """No statement carries Python formatting placeholders."""
    for name, sql in Q.items():
        assert not re.search(r"\{\w*\}|%s|%\(", sql), name

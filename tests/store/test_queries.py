"""The named-query loader, and the SQLite store's query file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from durably.errors import LeaseLostError
from durably.models import Fence, OperationKind, OperationRecord, OperationStatus
from durably.store import _rows
from durably.store._queries import NullTail, QueryFileError, load_queries, numbered, with_nulls
from durably.store.sqlite._migrate import migrate
from durably.store.sqlite.store import Q, _record


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


def test_named_parameters_are_numbered_in_the_order_given() -> None:
    """Each ``:name`` becomes ``?N`` for its position in the names (a name used twice
    gets one number), ``::`` casts and words with colons inside are left alone, and a
    name that is not given is refused."""
    statement = "SELECT :b, :a WHERE x = :b AND y = CAST(z AS TEXT)::text AND w = 'a:b'"
    assert numbered(statement, ("a", "b")) == (
        "SELECT ?2, ?1 WHERE x = ?2 AND y = CAST(z AS TEXT)::text AND w = 'a:b'"
    )
    with pytest.raises(QueryFileError, match=r":c is not one of a, b"):
        numbered("SELECT :a, :c", ("a", "b"))


def test_parameters_named_are_written_as_null_and_the_others_kept() -> None:
    """``with_nulls`` replaces exactly the parameters named, wherever they are used,
    and refuses a name the statement does not use."""
    statement = "SELECT :a, :b, coalesce(:a, :ab) WHERE w = 'x:a' AND y = z::a"
    assert with_nulls(statement, ("a",)) == (
        "SELECT NULL, :b, coalesce(NULL, :ab) WHERE w = 'x:a' AND y = z::a"
    )
    with pytest.raises(QueryFileError, match=r"no parameter :c"):
        with_nulls(statement, ("a", "c"))


def test_a_null_tail_drops_its_trailing_values_only_when_all_are_none() -> None:
    """``NullTail.bind`` binds the NULL-literal variant, without the trailing values,
    only when every one of them is None; else the whole statement and values."""
    tail = NullTail("INSERT INTO t VALUES (:a, :b, :c)", ("a", "b", "c"), 2)
    assert tail.bind((1, None, None)) == ("INSERT INTO t VALUES (?1, NULL, NULL)", (1,))
    for values in [(1, 2, None), (1, None, 3), (1, 2, 3)]:
        assert tail.bind(values) == ("INSERT INTO t VALUES (?1, ?2, ?3)", values)


@pytest.mark.parametrize(
    ("error", "wake_at"),
    [(None, None), ('{"type": "E"}', None), (None, 30), ('{"type": "E"}', 30)],
    ids=["completed", "failed", "waiting", "both"],
)
def test_the_numbered_checkpoint_writes_the_same_row_as_the_named_one(
    tmp_path: Path, error: str | None, wake_at: int | None
) -> None:
    """The SQLite store's checkpoint (the numbered statement, or its variant with
    NULL literals when ``error`` and ``wake_at`` are None) writes what the named
    statement writes with the same values by name, and refuses a stale fence."""
    connection = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    connection.row_factory = sqlite3.Row
    migrate(connection)
    connection.execute(
        "INSERT INTO workflows (workflow_id, workflow_name, status, version, serializer,"
        " owner, fence, created_at, updated_at)"
        " VALUES ('wf', 'w', 'RUNNING', '', 'json', 'me', 3, 0, 0)"
    )
    fence = Fence(workflow_id="wf", owner="me", fence=3)
    rows = []
    for seq, numbered_write in enumerate((False, True)):
        operation = OperationRecord(
            workflow_id="wf",
            seq=seq,
            kind=OperationKind.STEP,
            name="step",
            status=OperationStatus.COMPLETED,
            result='{"a": 1}',
            error=error,
            serializer="json",
            attempts=2,
            started_at=10,
            finished_at=20,
            wake_at=wake_at,
        )
        if numbered_write:
            _record(connection, fence, _rows.operation_values(fence, operation))
        else:
            named = _rows.operation_params(fence, operation)
            assert connection.execute(Q["record_operation"], named).rowcount == 1
        row = connection.execute("SELECT * FROM operations WHERE seq = ?", (seq,)).fetchone()
        rows.append({**dict(row), "seq": None})
    assert rows[0] == rows[1]
    assert (rows[1]["attempts"], rows[1]["error"], rows[1]["wake_at"]) == (2, error, wake_at)
    stale = Fence(workflow_id="wf", owner="me", fence=2)
    with pytest.raises(LeaseLostError):
        _record(connection, stale, _rows.operation_values(stale, operation))

"""Named SQL queries, read from a ``.sql`` file shipped in a store's package.

A query file is a series of blocks::

    -- name: claim_workflow
    -- Claim one workflow if it is claimable.
    UPDATE workflows SET ... WHERE workflow_id = :workflow_id ...;

Each block starts with a ``-- name:`` header, then at least one ``--`` line saying
what the query does, then one statement. Keeping SQL in ``.sql`` files keeps it
reviewable and greppable, and lets each dialect's store have its own file. Values are
always bound as parameters, never formatted into the text.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from importlib import resources
from typing import Any

_HEADER = re.compile(r"^-- name: *(\w+) *$", re.MULTILINE)
_NAMED_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


class QueryFileError(ValueError):
    """A query file is malformed (a packaging bug, found when the store is imported)."""


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """Parse ``filename`` in ``package`` into ``{name: statement}``.

    Comment lines are dropped and so is the final semicolon.

    Raises:
        QueryFileError: a name repeats, a query has no description, or no statement.
    """
    where = f"{package}/{filename}"
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = body.strip().splitlines()
        if not lines or not lines[0].startswith("--"):
            raise QueryFileError(f"query {name!r} in {where} has no description line")
        statement = "\n".join(line for line in lines if not line.lstrip().startswith("--")).strip()
        if not statement:
            raise QueryFileError(f"query {name!r} in {where} has no statement")
        if name in queries:
            raise QueryFileError(f"query {name!r} is defined twice in {where}")
        queries[name] = statement.removesuffix(";").rstrip()
    return queries


def numbered(statement: str, names: Sequence[str]) -> str:
    """``statement`` with its ``:name`` parameters turned into ``?N``, N the position
    of the name in ``names`` (counting from 1), so that it binds a tuple in that order:
    SQLite binds a tuple faster than it looks each name up in a mapping.

    Raises:
        QueryFileError: the statement uses a name that ``names`` lacks.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            raise QueryFileError(f"parameter :{name} is not one of {', '.join(names)}")
        return f"?{names.index(name) + 1}"

    return _NAMED_PARAMETER.sub(replace, statement)


def with_nulls(statement: str, names: Collection[str]) -> str:
    """``statement`` with its ``:name`` parameters in ``names`` written as ``NULL``.

    For a hot statement whose usual values of some parameters are None: Python's
    ``sqlite3`` binds a None only after looking for an adapter, which fails, and that
    costs about 3,400 CPU instructions per None (callgrind), the price of a whole
    ``INSERT`` column; a NULL literal costs nothing.

    Raises:
        QueryFileError: ``statement`` does not use one of ``names``.
    """
    missing = set(names) - set(_NAMED_PARAMETER.findall(statement))
    if missing:
        raise QueryFileError(f"the statement has no parameter :{', :'.join(sorted(missing))}")
    return _NAMED_PARAMETER.sub(
        lambda match: "NULL" if match.group(1) in names else match.group(0), statement
    )


class NullTail:
    """A statement bound by position whose last ``count`` values are usually None.

    :meth:`bind` picks the variant with those parameters written as ``NULL`` literals
    (see :func:`with_nulls`) when they are all None, and drops them from the values.
    """

    __slots__ = ("count", "full", "nones", "short")

    def __init__(self, statement: str, names: Sequence[str], count: int) -> None:
        #: The statement bound by position, every value bound.
        self.full = numbered(statement, names)
        #: The variant with the last ``count`` parameters written as NULL literals.
        self.short = numbered(with_nulls(statement, names[-count:]), names[:-count])
        self.count = count
        self.nones = (None,) * count

    def bind(self, values: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        """The statement to run with ``values`` (in the order of ``names``), and the
        values to bind to it."""
        if values[-self.count :] == self.nones:
            return self.short, values[: -self.count]
        return self.full, values

"""Loads named SQL queries from a ``queries.sql`` file.

Each query starts with a ``-- name: query_name`` line, followed by ``--`` description
lines and the statement. Queries are kept in ``.sql`` files so that SQL stays
reviewable and greppable, and they are always run with bound parameters.
"""

from __future__ import annotations

import re
from importlib import resources

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """Parse ``filename`` in ``package`` into ``{name: sql}``.

    Raises:
        ValueError: a name is used twice or a query is empty.
    """
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    parts = _HEADER.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if not statement:
            raise ValueError(f"query {name!r} in {package}/{filename} is empty")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {package}/{filename}")
        queries[name] = statement.rstrip(";")
    return queries

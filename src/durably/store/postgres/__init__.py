"""The PostgreSQL store (``pip install 'durably[postgres]'``), on psycopg 3."""

from __future__ import annotations

from durably.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]

"""The SQLite store (standard library only)."""

from __future__ import annotations

from durably.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]

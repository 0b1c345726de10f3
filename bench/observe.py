"""Counting workflows by status from outside the measured process (the parent polls
the database, so the measured process does no extra work to report progress)."""

from __future__ import annotations

import sqlite3
from typing import Any

#: The status of a finished workflow, and the table that holds it, per system.
_DONE = {"durably": ("workflows", "COMPLETED"), "dbos": ("workflow_status", "SUCCESS")}


class StatusCounter:
    """Counts the workflows of one sample's database that have a given status."""

    def __init__(self, where: dict[str, Any], system: str) -> None:
        self.table, self.done = _DONE[system]
        self.kind = where["kind"]
        if self.kind == "sqlite":
            path = where["path"] if system == "durably" else where["url"].removeprefix("sqlite:///")
            self._sqlite = sqlite3.connect(path, timeout=30)
        else:
            import psycopg
            from psycopg import sql

            self._postgres = psycopg.connect(where["url"], autocommit=True)
            self._postgres.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(where["schema"]))
            )

    def count(self, status: str | None = None) -> int:
        """How many workflows have ``status`` (default: finished successfully)."""
        wanted = status or self.done
        query = f"SELECT count(*) FROM {self.table} WHERE status = "
        if self.kind == "sqlite":
            row = self._sqlite.execute(query + "?", (wanted,)).fetchone()
        else:
            row = self._postgres.execute(query + "%s", (wanted,)).fetchone()
        assert row is not None
        return int(row[0])

    def processing_figures(self) -> tuple[float, float]:
        """(steady-state steps/s, processing span in seconds) from the timestamps
        durably recorded on PostgreSQL, read once every workflow is complete (reading
        them afterwards puts no load on the database during the run).

        The steady-state rate is the middle 80% of the steps by their finish time
        over the time they took; the span runs from the first step's start to the
        last workflow's finish (process start-up is not in it).
        """
        if self.kind != "postgres" or self.table != "workflows":
            raise ValueError("processing figures are read from durably on PostgreSQL")
        steps = self._postgres.execute(
            "SELECT count(*), min(started_at),"
            " percentile_disc(0.1) WITHIN GROUP (ORDER BY finished_at),"
            " percentile_disc(0.9) WITHIN GROUP (ORDER BY finished_at)"
            " FROM operations WHERE status = 'COMPLETED'"
        ).fetchone()
        last = self._postgres.execute("SELECT max(finished_at) FROM workflows").fetchone()
        assert steps is not None and last is not None
        count, first_start, tenth, ninetieth = (int(value) for value in steps)
        steady = 0.8 * count / max((ninetieth - tenth) / 1e6, 1e-9)
        return steady, (int(last[0]) - first_start) / 1e6

    def close(self) -> None:
        """Close the connection."""
        if self.kind == "sqlite":
            self._sqlite.close()
        else:
            self._postgres.close()

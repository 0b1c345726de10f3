"""SIGKILL at every write boundary and inside every step, compensation and retry
attempt of workflows that use every feature, on SQLite and on PostgreSQL.

The sweep itself is ``sweep_driver.py`` (it forks the hundreds of processes it needs
from one interpreter); each test runs one mode of it and fails on any violation. A
violation is any of: an outcome that differs from the crash-free run; a recorded
operation, failed attempt, signal or final status lost or changed by the recovery; a
timer (sleep, signal timeout) moved; a step or compensation whose result (or failed
attempt) was recorded running again; a process running one attempt twice; the
approval signal stored or consumed other than exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tests.conftest import postgres_url, require_postgres

DRIVER = Path(__file__).with_name("sweep_driver.py")
pytestmark = pytest.mark.crash

MODES = ["before", "after", "inside", "repeat"]
#: On PostgreSQL: every write boundary (after its commit) and the repeated crashes.
#: A kill before the N-th write, or inside a step, leaves the database exactly as a
#: kill after write N-1 does: what differs is only which step bodies ran, which is
#: the engine's business and is swept on SQLite. (The time saved keeps the suite fast.)
POSTGRES_MODES = ["after", "repeat"]


def run_sweep(store: str, mode: str, work: Path, *extra: str) -> dict[str, object]:
    """Run one sweep and return its summary."""
    completed = subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "--store",
            store,
            "--mode",
            mode,
            "--work",
            str(work),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    summary: dict[str, object] = json.loads(completed.stdout.splitlines()[-1])
    return summary


def check_summary(
    summary: dict[str, object], mode: str, record: Callable[[str, object], None]
) -> None:
    """No violation, and every point of the mode was tried."""
    violations = summary["violations"]
    assert violations == [], "\n".join(map(str, violations))  # type: ignore[arg-type]
    boundaries = int(summary["boundaries"])  # type: ignore[arg-type]
    assert boundaries >= 30, summary
    points = int(summary["crash_points"])  # type: ignore[arg-type]
    if mode in ("before", "after"):
        assert points >= boundaries - 2, summary  # timers may shift the last boundaries
        assert summary["unreached_points"] >= 1, "the sweep did not reach the end"  # type: ignore[operator]
    elif mode == "inside":
        assert points == 13, summary
    else:
        assert points >= 20, summary  # one process per write of the whole run
    assert summary["recoveries"] >= 1  # type: ignore[operator]
    record("crash_points", points)
    record("recoveries", summary["recoveries"])
    record("checks", summary["checks"])
    record("orphaned_runs", summary["orphaned_runs"])


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_sweep_on_sqlite(
    mode: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Every crash point of the mode, on a SQLite file, recovers exactly."""
    check_summary(run_sweep("sqlite", mode, tmp_path), mode, record_property)


@pytest.mark.parametrize("mode", POSTGRES_MODES)
def test_sigkill_sweep_on_postgres(
    mode: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Every crash point of the mode, on PostgreSQL (a new schema per point), recovers
    exactly."""
    url = require_postgres()
    prefix = f"sweep_{uuid.uuid4().hex[:12]}_{mode}"
    try:
        summary = run_sweep("postgres", mode, tmp_path, "--url", url, "--schema", prefix)
    finally:
        drop_schemas(prefix)
    check_summary(summary, mode, record_property)


def drop_schemas(prefix: str) -> None:
    """Drop whatever schemas an interrupted sweep left behind."""
    with psycopg.connect(postgres_url(), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix + "_",)
        ).fetchall()
        for (name,) in rows:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

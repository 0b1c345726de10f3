"""examples/migration.py: a real SQLite file migrated in batches by a sync workflow;
SIGKILL mid-way resumes at the next batch; a bad row restores the backup."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from .conftest import Finished, duplicates, kill_when_paused, run_example, service_states

pytestmark = pytest.mark.crash

SCRIPT = "migration.py"
SAMPLE = ("--rows", "2500", "--batch-size", "500")


def migrate(state: Path, *args: str) -> Finished:
    """Run the example on ``state``."""
    return run_example(SCRIPT, "--state", str(state), *args)


def dump(database: Path) -> tuple[int, list[str]]:
    """The database's schema version and full SQL dump."""
    with closing(sqlite3.connect(database)) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        return int(version), list(db.iterdump())


def outcome(state: Path) -> dict[str, Any]:
    """What the migration left: the migrated database and the progress window."""
    return {"database": dump(state / "customers.db"), "progress": service_states(state)["progress"]}


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The result of a migration nobody interrupted."""
    state = tmp_path_factory.mktemp("uncrashed")
    finished = migrate(state, *SAMPLE)
    assert finished.returncode == 0, finished.output
    assert "COMPLETED: 2500 customers now at schema version 2" in finished.output
    return outcome(state)


def shown(progress: dict[str, Any]) -> Any:
    """What the progress window shows for the one migration it has seen."""
    (migration,) = progress["migrations"].values()
    return migration


def test_migration_splits_every_name_and_bumps_the_version(uncrashed: dict[str, Any]) -> None:
    """Every row has first and last names; the schema is version 2; 100 % shown."""
    version, statements = uncrashed["database"]
    assert version == 2
    rows = [s for s in statements if s.startswith('INSERT INTO "customers"')]
    assert len(rows) == 2500
    assert rows[0] == "INSERT INTO \"customers\" VALUES(1,'Alan Thompson','Alan','Thompson');"
    assert shown(uncrashed["progress"]) == {"batches_done": [0, 1, 2, 3, 4], "percent": 100}


@pytest.mark.parametrize("pause", ["progress.batch_done#1", "progress.batch_done#3"])
def test_killed_between_batches_resumes_to_the_same_database(
    pause: str, uncrashed: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL right after a batch was committed: the new process redoes only that
    batch (harmlessly) and the following ones; the database ends identical."""
    before = kill_when_paused(SCRIPT, "--state", str(tmp_path), *SAMPLE, pause=pause)
    assert "added column customers.last_name" in before
    resumed = migrate(tmp_path, *SAMPLE)
    assert resumed.returncode == 0, resumed.output
    assert "backed up" not in resumed.output and "added column" not in resumed.output
    assert outcome(tmp_path) == uncrashed
    assert duplicates(tmp_path) == ["progress.batch_done"]


@pytest.fixture
def bad_database(tmp_path: Path) -> Path:
    """A version-1 database of 10 customers whose 8th has an empty name (batch 3 of 4
    with batches of 3 rows)."""
    target = tmp_path / "shop.db"
    with closing(sqlite3.connect(target)) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        db.executemany(
            "INSERT INTO customers VALUES (?, ?)",
            [(i, "" if i == 8 else f"Customer Number{i}") for i in range(1, 11)],
        )
        db.execute("PRAGMA user_version = 1")
        db.commit()
    return target


def test_bad_row_restores_the_backup(bad_database: Path, tmp_path: Path) -> None:
    """A customer with an empty name fails batch 3: the database is restored to the
    version-1 database it was (same schema version, same SQL dump: schema and rows)."""
    original = dump(bad_database)
    bad = ("--target", str(bad_database), "--batch-size", "3")
    finished = migrate(tmp_path / "state", *bad)
    assert finished.returncode == 1
    assert "COMPENSATED: ValueError: customer 8 has an empty name" in finished.output
    assert "restored" in finished.output
    assert dump(bad_database) == original
    assert shown(service_states(tmp_path / "state")["progress"])["batches_done"] == [0, 1]


def test_killed_after_the_first_batch_of_a_bad_database_still_restores_it(
    bad_database: Path, tmp_path: Path
) -> None:
    """SIGKILL right after batch 1 was committed (the database half migrated); the new
    process redoes batch 1, fails on the bad row in batch 3 and restores the backup
    taken by the killed process."""
    original = dump(bad_database)
    bad = ("--target", str(bad_database), "--batch-size", "3")
    state = tmp_path / "state"
    kill_when_paused(SCRIPT, "--state", str(state), *bad, pause="progress.batch_done#1")
    assert dump(bad_database) != original
    resumed = migrate(state, *bad)
    assert resumed.returncode == 1, resumed.output
    assert "COMPENSATED: ValueError: customer 8 has an empty name" in resumed.output
    assert "backed up" not in resumed.output and "restored" in resumed.output
    assert dump(bad_database) == original
    assert shown(service_states(state)["progress"])["batches_done"] == [0, 1]
    assert duplicates(state) == ["progress.batch_done"]

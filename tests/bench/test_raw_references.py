"""The bare-driver references write what they claim to measure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.raw import WARM_UP_COMMITS, sqlite_checkpoint_rate


def _checkpoints(path: Path) -> list[tuple[str, int, int]]:
    """Every checkpoint written: (workflow id, seq, started_at), by workflow and seq."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT workflow_id, seq, started_at FROM operations ORDER BY workflow_id, seq"
        ).fetchall()
    finally:
        connection.close()


def test_one_per_commit_writes_one_workflows_checkpoints_in_order(tmp_path: Path) -> None:
    database = tmp_path / "one.db"

    result = sqlite_checkpoint_rate(str(database), "NORMAL", seconds=60, max_rows=30)

    assert result["rows"] == 30
    written = _checkpoints(database)
    assert [(workflow, seq) for workflow, seq, _ in written] == [
        ("wf-0", seq) for seq in range(30 + WARM_UP_COMMITS)
    ]


def test_many_per_commit_writes_that_many_concurrent_workflows_of_their_steps(
    tmp_path: Path,
) -> None:
    """Ten workflows at a time, four steps each, their starts staggered: each
    transaction writes one checkpoint of each of ten distinct workflows; every
    workflow's checkpoints are consecutive seqs below four, from seq 0 but for the
    ten already running when the run began; and at most the ten running when it
    stopped have not reached their last step."""
    database = tmp_path / "many.db"

    result = sqlite_checkpoint_rate(
        str(database),
        "NORMAL",
        seconds=60,
        max_rows=200,
        rows_per_commit=10,
        steps_per_workflow=4,
    )

    assert result["rows"] == 200
    written = _checkpoints(database)
    assert len(written) == 200 + 10 * WARM_UP_COMMITS
    transactions: dict[int, set[str]] = {}
    seqs: dict[str, list[int]] = {}
    for workflow, seq, started_at in written:
        transactions.setdefault(started_at // 10, set()).add(workflow)
        seqs.setdefault(workflow, []).append(seq)
    assert all(len(workflows) == 10 for workflows in transactions.values())
    assert len(transactions) == 20 + WARM_UP_COMMITS
    first = {f"wf-{number}" for number in range(10)}
    for workflow, its in seqs.items():
        assert its == list(range(its[0], its[0] + len(its))) and its[-1] < 4
        assert its[0] == 0 or workflow in first
    assert len([its for its in seqs.values() if its[-1] < 3]) <= 10

"""Two processes on one SQLite file race to run the same workflows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from durably import Context, Durably, SqliteStore

PROGRAM = Path(__file__).with_name("race_program.py")
pytestmark = pytest.mark.crash


async def enqueue(database: Path, count: int) -> None:
    """Create ``count`` pending workflows from a client that runs nothing."""
    client = Durably(SqliteStore(database), worker=False)

    @client.workflow(name="raced")
    async def raced(ctx: Context, n: int) -> int:
        return n

    async with client:
        for n in range(count):
            await client.start(raced, n, workflow_id=f"race-{n}")


def test_two_processes_never_run_one_workflow_twice(tmp_path: Path) -> None:
    """Every workflow completes, and every step body ran exactly once in total."""
    database, log, count = tmp_path / "race.db", tmp_path / "race.log", 200
    asyncio.run(enqueue(database, count))
    workers = [
        subprocess.Popen(
            [sys.executable, str(PROGRAM), str(database), str(log), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.close()
    for worker in workers:
        assert worker.wait(timeout=120) == 0
        assert worker.stdout is not None
        worker.stdout.close()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    executions = Counter((entry["workflow"], entry["step"]) for entry in entries)
    assert len(executions) == count * 3
    assert set(executions.values()) == {1}
    assert len({entry["pid"] for entry in entries}) == 2

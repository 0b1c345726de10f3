"""SIGKILL at every operation boundary and inside every step, then recover.

Each case runs the crash program until it kills itself, reads what was recorded,
runs a fresh process to recover, and checks that (a) the outcome equals a crash-free
run and (b) no step whose result was recorded ran its body again afterwards.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from durably import SqliteStore
from durably.models import OperationKind, OperationStatus

PROGRAM = Path(__file__).with_name("crash_program.py")
pytestmark = pytest.mark.crash


def run_program(
    database: Path, log: Path, crash: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the crash program as a real process."""
    command = [sys.executable, str(PROGRAM), str(database), str(log)]
    if crash:
        command.append(crash)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def recorded_steps(database: Path) -> set[tuple[str, str]]:
    """(workflow, step) pairs whose result is recorded as completed."""

    async def read() -> set[tuple[str, str]]:
        store = SqliteStore(database)
        await store.open()
        try:
            done: set[tuple[str, str]] = set()
            for workflow_id in ("order-1", "fail-1"):
                history = await store.load_history(workflow_id)
                for operation in history.operations.values():
                    if operation.status is OperationStatus.COMPLETED and operation.kind in (
                        OperationKind.STEP,
                        OperationKind.COMPENSATION,
                    ):
                        done.add((workflow_id, operation.name.replace(":compensate", "")))
            return done
        finally:
            await store.close()

    if not database.exists():
        return set()
    return asyncio.run(read())


def side_effects(log: Path) -> list[dict[str, object]]:
    """Every step execution logged so far."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The outcome of a run without a crash."""
    directory = tmp_path_factory.mktemp("baseline")
    completed = run_program(directory / "db.sqlite", directory / "log.jsonl")
    assert completed.returncode == 0, completed.stderr
    outcome: dict[str, object] = json.loads(completed.stdout)
    assert outcome["order"] == "R|C|S(yes)"
    assert outcome["failing"] == ["COMPENSATED", "card declined"]
    return outcome


def crash_then_recover(directory: Path, crash: str, baseline: dict[str, object]) -> bool:
    """Crash at ``crash``, recover, check; return False when the crash point was never
    reached (the sweep is over)."""
    database, log = directory / "db.sqlite", directory / "log.jsonl"
    crashed = run_program(database, log, crash)
    if crashed.returncode == 0:
        return False
    assert crashed.returncode == -9, crashed.stderr
    recorded = recorded_steps(database)
    before = len(side_effects(log))
    recovered = run_program(database, log)
    assert recovered.returncode == 0, recovered.stderr
    outcome = json.loads(recovered.stdout)
    assert outcome["order"] == baseline["order"], crash
    assert outcome["failing"] == baseline["failing"], crash
    rerun = [
        (entry["workflow"], entry["step"])
        for entry in side_effects(log)[before:]
        if (entry["workflow"], entry["step"]) in recorded
    ]
    assert rerun == [], f"{crash}: recorded steps ran again after recovery: {rerun}"
    return True


@pytest.mark.parametrize("phase", ["before", "after"])
def test_sigkill_at_every_write_boundary_recovers_exactly(
    phase: str, baseline: dict[str, object], tmp_path: Path
) -> None:
    """Every write boundary, before and after its commit, is a survivable crash point."""
    boundaries = int(str(baseline["boundaries"]))
    assert boundaries >= 10
    tried = 0
    for count in range(1, boundaries + 2):
        directory = tmp_path / f"{phase}-{count}"
        directory.mkdir()
        if not crash_then_recover(directory, f"{phase}:{count}", baseline):
            break
        tried += 1
    assert tried >= boundaries - 1


@pytest.mark.parametrize("step", ["reserve", "charge", "ship", "book", "pay", "unbook"])
def test_sigkill_inside_each_step_recovers_exactly(
    step: str, baseline: dict[str, object], tmp_path: Path
) -> None:
    """A process killed inside a step body re-runs that step and nothing recorded."""
    assert crash_then_recover(tmp_path, f"inside:{step}", baseline)

"""`durably demo` runs end to end: crash, resume, compensation, sleep and signal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.crash


def test_demo_kills_a_process_and_resumes_the_workflow(tmp_path: Path) -> None:
    """The demo's timeline shows the kill, the replay and every outcome."""
    completed = subprocess.run(
        [sys.executable, "-m", "durably", "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    output = completed.stdout
    assert "kill -9 (SIGKILL)" in output
    assert '"result": "tracking-parcel-order-1001"' in output
    assert "pack_order                   " in output
    assert "ran in process 1, then process 2" in output
    assert '"failed": "COMPENSATED"' in output
    assert "reserve_inventory:compensate" in output
    assert '"result": "order-1003: left at the front door"' in output
    assert (tmp_path / "demo.db").exists()


def test_unknown_command_exits_non_zero_with_usage() -> None:
    """A wrong command prints usage and fails."""
    completed = subprocess.run(
        [sys.executable, "-m", "durably", "nonsense"], capture_output=True, text=True, check=False
    )
    assert completed.returncode != 0
    assert "usage: durably" in completed.stderr

"""The soak, small: ``soak_program.py`` with 500 workflows (sleeps and signals, one
process, SQLite). The 20,000-workflow run and its memory curve are in
docs/guarantees.md; run it with ``python tests/reliability/soak_program.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PROGRAM = Path(__file__).with_name("soak_program.py")
WORKFLOWS = 500


def test_a_soak_completes_every_workflow_without_leaking(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Every workflow completes with its result; the open file descriptors are the
    same after the last wave as after opening, and the same after closing as before
    opening; memory after the first wave stays flat (a few MiB at most)."""
    completed = subprocess.run(
        [
            sys.executable,
            str(PROGRAM),
            "--workflows",
            str(WORKFLOWS),
            "--wave",
            "100",
            "--database",
            str(tmp_path / "soak.db"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads(completed.stdout.splitlines()[-1])["summary"]
    assert summary["completed"] == WORKFLOWS
    assert summary["wrong_results"] == []
    assert summary["fds_before_close"] == summary["fds_after_open"]
    assert summary["fds_after_close"] == summary["fds_before_open"]
    curve = summary["curve"]
    assert len(curve) == WORKFLOWS // 100
    growth = curve[-1]["rss_mib"] - curve[0]["rss_mib"]
    assert growth < 8, f"RSS grew {growth:.1f} MiB over {WORKFLOWS} workflows: {curve}"
    record_property("soak_workflows", WORKFLOWS)

"""docs/cli.md's example program runs as written and records what the page shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import run_durably

PAGE = Path(__file__).parents[2] / "docs" / "cli.md"


def test_the_example_shop_records_the_workflows_the_page_lists(tmp_path: Path) -> None:
    """`python shop.py` leaves one waiting, one compensated, one completed and one
    sleeping workflow, as the page's `durably list` shows."""
    (program,) = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    (tmp_path / "shop.py").write_text(program, encoding="utf-8")
    subprocess.run(
        [sys.executable, "shop.py"], cwd=tmp_path, capture_output=True, timeout=60, check=True
    )
    listed = run_durably(["list", "--json", "--db", f"sqlite:///{tmp_path / 'shop.db'}"])
    assert listed.returncode == 0, listed.stderr
    statuses = {w["workflow_id"]: w["status"] for w in json.loads(listed.stdout)["workflows"]}
    assert statuses == {
        "order-A-1": "SUSPENDED",
        "order-A-2": "COMPENSATED",
        "order-A-3": "COMPLETED",
        "renewal-C-7": "SUSPENDED",
    }
    page = PAGE.read_text(encoding="utf-8")
    for row in ("│ order-A-1   │ checkout │ SUSPENDED", "│ order-A-2   │ checkout │ COMPENSATED"):
        assert row in page


def test_the_page_shows_the_real_help_of_every_command() -> None:
    """The "All commands" block is `durably --help` as it prints on a terminal 104
    columns wide, and every command it lists is described on the page."""
    page = PAGE.read_text(encoding="utf-8")
    (shown,) = re.findall(r"```console\n\$ durably --help\n(.*?)```", page, re.DOTALL)
    printed = run_durably(["--help"], env={"COLUMNS": "104"})
    assert printed.returncode == 0
    assert shown == printed.stdout
    commands = re.findall(r"^  (\w+)  ", printed.stdout.split("Commands:")[1], re.MULTILINE)
    assert "dashboard" in commands and "worker" in commands
    for command in commands:
        assert f"`durably {command}" in page, command

"""docs/events.md's examples run as written and print the output the page shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).parents[2] / "docs" / "events.md"


def blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` on the page, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def run(code: str, directory: Path) -> str:
    script = directory / "example.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def test_the_events_page_prints_what_it_shows(tmp_path: Path) -> None:
    """The workflow example prints the shown output twice (the second run reads the
    recorded workflow back), and the other-process reader prints its shown output."""
    workflow, reader = blocks("python")
    shown_workflow, shown_reader = blocks("text")
    assert run(workflow, tmp_path) == shown_workflow
    assert run(workflow, tmp_path) == shown_workflow
    assert run(reader, tmp_path) == shown_reader

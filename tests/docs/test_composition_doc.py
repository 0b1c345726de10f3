"""docs/composition.md's example runs as written and prints the output the page shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).parents[2] / "docs" / "composition.md"


def blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` on the page, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_the_composition_page_prints_what_it_shows(tmp_path: Path) -> None:
    """The example prints the shown output, and the same again on a second run (the
    finished workflow is found by its id)."""
    (example,) = blocks("python")
    (shown,) = blocks("text")
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    for _ in range(2):
        printed = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert printed == shown

"""docs/guarantees.md's encryption example is the file it shows, and prints what the
page says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "encrypted_shop.py"
PAGE = ROOT / "docs" / "guarantees.md"


def test_the_encryption_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    """The page shows the example file verbatim, and its output as the run prints it."""
    page = PAGE.read_text(encoding="utf-8")
    assert f"```python\n{EXAMPLE.read_text(encoding='utf-8')}```" in page
    shown = re.search(r"Output \(real, from that command\):\n\n```text\n(.*?)```", page, re.S)
    assert shown is not None
    printed = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert printed == shown.group(1)

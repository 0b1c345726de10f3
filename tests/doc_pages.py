"""Helpers for the tests that run the docs' examples as written: a page's fenced
blocks, and a script run in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def fenced_blocks(page: Path, language: str) -> list[str]:
    """Every fenced block of ``language`` on ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def run_script(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter in ``cwd``; it must exit 0."""
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def run_code(code: str, directory: Path, name: str = "example.py") -> str:
    """Write ``code`` to ``directory/name``, run it there, and return what it printed."""
    script = directory / name
    script.write_text(code, encoding="utf-8")
    return run_script(script, directory).stdout

"""The examples of docs/testing.md pass under pytest, printing what the page shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).parents[2] / "docs" / "testing.md"
EXAMPLES = {
    "test_subscription.py": '"""Tests of a subscription workflow',
    "test_delivery_sync.py": '"""A def workflow tested without async',
}


def example(opening: str) -> str:
    """The ```python block of the page that starts with ``opening``."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    matching = [block for block in blocks if block.startswith(opening)]
    assert len(matching) == 1, f"docs/testing.md has no single example opening {opening!r}"
    return str(matching[0])


def test_the_examples_pass_with_the_output_shown(tmp_path: Path) -> None:
    """Both example files pass; the crash counts and the error are those printed."""
    for name, opening in EXAMPLES.items():
        (tmp_path / name).write_text(example(opening), encoding="utf-8")
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-p",
            "no:xdist",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "--rootdir",
            str(tmp_path),
            *EXAMPLES,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "9 passed" in finished.stdout
    page = PAGE.read_text(encoding="utf-8")
    for line in finished.stdout.splitlines():
        for printed in re.findall(
            r"(33 days later: .*|grace period from: .*|crash \w+: .*x)$", line
        ):
            assert printed in page, printed
    assert "charge called 2x" in finished.stdout
    assert "grace period from: 30 days, 0:00:00" in finished.stdout
    assert "history records step 'send-discount'" in finished.stdout

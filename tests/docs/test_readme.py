"""The README's code runs as written, and says what the project's commands are."""

from __future__ import annotations

import re
from pathlib import Path

from tests.doc_pages import run_script

README = Path(__file__).parents[2] / "README.md"


def python_blocks() -> list[str]:
    """Every ```python block of the README."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_quick_start_runs_twice_with_the_same_result(tmp_path: Path) -> None:
    """The quick start completes, and a second run returns the recorded result."""
    script = tmp_path / "quickstart.py"
    script.write_text(python_blocks()[0], encoding="utf-8")
    outputs = [run_script(script, tmp_path).stdout for _ in range(2)]
    assert outputs[0].strip().endswith("at the door")
    assert outputs[1].strip().splitlines()[-1] == outputs[0].strip().splitlines()[-1]
    assert (tmp_path / "shop.db").exists()


def test_readme_shows_the_two_commands() -> None:
    """The demo command and the test command are in the README."""
    text = README.read_text(encoding="utf-8")
    assert "durably demo" in text
    assert "python -m pytest -n auto" in text

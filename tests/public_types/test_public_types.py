"""The public API's types as users see them: typed_user_code.py passes mypy --strict,
and the asserted inferences (e.g. ``await app.run(async_wf, ...)`` is the workflow's
result type, not ``Never``) hold; a wrong assertion is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

HERE = Path(__file__).parent


def _mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_typed_user_code_passes_mypy_strict(tmp_path: Path) -> None:
    checked = _mypy(HERE / "typed_user_code.py", tmp_path / "cache")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_wrong_inferred_type_is_reported(tmp_path: Path) -> None:
    source = (HERE / "typed_user_code.py").read_text(encoding="utf-8")
    wrong = source.replace(
        "assert_type(await app.run(add_one, 1), int)", "assert_type(await app.run(add_one, 1), str)"
    )
    assert wrong != source
    path = tmp_path / "wrong_user_code.py"
    path.write_text(wrong, encoding="utf-8")
    checked = _mypy(path, tmp_path / "cache")
    assert checked.returncode == 1
    assert 'Expression is of type "int", not "str"' in checked.stdout

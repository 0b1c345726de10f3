"""docs/versioning.md's example runs as written and prints the output the page shows."""

from __future__ import annotations

from pathlib import Path

from tests.doc_pages import ROOT, fenced_blocks, run_code

PAGE = ROOT / "docs" / "versioning.md"


def blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` on the page, in order."""
    return fenced_blocks(PAGE, language)


def test_the_versioning_page_prints_what_it_shows(tmp_path: Path) -> None:
    """Version 2 finishes version 1's order on the old path and its own on the new one."""
    *_, example = blocks("python")
    (shown,) = blocks("text")
    assert run_code(example, tmp_path) == shown

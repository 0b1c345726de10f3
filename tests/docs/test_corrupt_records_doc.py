"""docs/corrupt-records.md's example runs as written and prints the output the page
shows."""

from __future__ import annotations

from pathlib import Path

from tests.doc_pages import ROOT, fenced_blocks, run_code

PAGE = ROOT / "docs" / "corrupt-records.md"


def blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` on the page, in order."""
    return fenced_blocks(PAGE, language)


def test_the_corrupt_records_page_prints_what_it_shows(tmp_path: Path) -> None:
    """A truncated step result parks the workflow with the error the page shows."""
    (example,) = blocks("python")
    (shown,) = blocks("text")
    assert run_code(example, tmp_path) == shown

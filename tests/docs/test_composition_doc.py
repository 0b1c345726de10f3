"""docs/composition.md's example runs as written and prints the output the page shows."""

from __future__ import annotations

from pathlib import Path

from tests.doc_pages import ROOT, fenced_blocks, run_code

PAGE = ROOT / "docs" / "composition.md"


def blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` on the page, in order."""
    return fenced_blocks(PAGE, language)


def test_the_composition_page_prints_what_it_shows(tmp_path: Path) -> None:
    """The example prints the shown output, and the same again on a second run (the
    finished workflow is found by its id)."""
    (example,) = blocks("python")
    (shown,) = blocks("text")
    for _ in range(2):
        assert run_code(example, tmp_path) == shown

"""docs/events.md's examples run as written and print the output the page shows."""

from __future__ import annotations

from pathlib import Path

from tests.doc_pages import ROOT, fenced_blocks, run_code

PAGE = ROOT / "docs" / "events.md"


def blocks(language: str) -> list[str]:
    """Every fenced block of ``language`` on the page, in order."""
    return fenced_blocks(PAGE, language)


def test_the_events_page_prints_what_it_shows(tmp_path: Path) -> None:
    """The workflow example prints the shown output twice (the second run reads the
    recorded workflow back), and the other-process reader prints its shown output."""
    workflow, reader, _ = blocks("python")
    shown_workflow, shown_reader, _ = blocks("text")
    assert run_code(workflow, tmp_path) == shown_workflow
    assert run_code(workflow, tmp_path) == shown_workflow
    assert run_code(reader, tmp_path) == shown_reader


def test_the_watch_example_prints_what_it_shows(tmp_path: Path) -> None:
    """The list of suspended workflows changes as the order suspends and is paid; its
    history lists the step and the signal wait with their results."""
    watcher = blocks("python")[2]
    shown = blocks("text")[2]
    assert run_code(watcher, tmp_path) == shown

"""Smoke test of the benchmark suite: the smallest scenario, at tiny sizes, through the
same code path as ``python -m bench`` (child processes, summaries, the table).

No timing is asserted: only that a complete row comes out.
"""

from __future__ import annotations

from pathlib import Path

from bench.scenarios import sequential
from bench.suite import SQLITE_NORMAL, Bench

from bench import report


def test_sequential_scenario_produces_complete_rows(tmp_path: Path) -> None:
    """Every row of the scenario has durably's figure; the steps/s row has its raw
    reference and their ratio, and the table and markdown show it."""
    bench = Bench(
        quick=True,
        tiny=True,
        repeat=1,
        workdir=tmp_path,
        backends=(SQLITE_NORMAL,),
        verbose=False,
        timeout=60,
    )

    rows = sequential.run(bench)

    assert rows, "the scenario produced no row"
    assert all(row.durably is not None and row.durably.samples for row in rows)
    steps = next(row for row in rows if row.key == "sequential/steps/sqlite-normal")
    assert steps.durably is not None and steps.durably.median > 0
    assert steps.reference is not None and steps.reference.median > 0
    assert steps.reference_ratio is not None and steps.reference_ratio > 0
    assert steps.backend == "SQLite NORMAL"
    text = report.text_table(rows)
    assert steps.metric in text and "raw SQLite WAL NORMAL" in text
    page = report.markdown(rows, preamble="# Benchmarks", notes="", image=None)
    assert f"| {steps.metric} [steps/s] | SQLite NORMAL |" in page
    assert list(tmp_path.iterdir()) == [], "sample databases were left behind"


def test_only_a_full_run_replaces_the_published_page(tmp_path: Path) -> None:
    """A quick or partial (--only) run writes nothing unless --output says where."""
    from bench.__main__ import REPOSITORY, output_directory

    assert output_directory(None, quick=False, only=None) == REPOSITORY / "docs"
    assert output_directory(None, quick=True, only=None) is None
    assert output_directory(None, quick=False, only=["concurrent"]) is None
    assert output_directory(tmp_path, quick=False, only=["concurrent"]) == tmp_path

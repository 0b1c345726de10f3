"""Smoke test of the benchmark suite: the smallest scenario, at tiny sizes, through the
same code path as ``python -m bench`` (child processes, summaries, the table).

No timing is asserted: only that a complete row comes out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.measure import summarize
from bench.scenarios import concurrent, sequential
from bench.suite import SQLITE_NORMAL, Bench, Row
from tests.conftest import require_postgres

from bench import report


def _tiny_bench(workdir: Path) -> Bench:
    """One repetition at tiny sizes on SQLite NORMAL, without DBOS."""
    return Bench(
        quick=True,
        tiny=True,
        repeat=1,
        workdir=workdir,
        backends=(SQLITE_NORMAL,),
        verbose=False,
        timeout=120,
    )


def test_sequential_scenario_produces_complete_rows(tmp_path: Path) -> None:
    """Every row of the scenario has durably's figure; the steps/s row has its raw
    reference and their ratio, and the table and markdown show it."""
    bench = _tiny_bench(tmp_path)

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


def test_concurrent_scenario_measures_the_engine_alone_next_to_the_raw_rate(
    tmp_path: Path,
) -> None:
    """The 100-at-a-time workload also runs on a MemoryStore (nothing stored), next to
    the run's raw commit rate: the ceiling of every store's figure."""
    bench = _tiny_bench(tmp_path)

    rows = concurrent.run(bench)

    alone = next(row for row in rows if row.key == "concurrent/steps-100/engine-alone")
    assert alone.backend == "none (MemoryStore)"
    assert alone.durably is not None and alone.durably.median > 0
    assert alone.reference is not None and alone.reference.median > 0
    assert "raw SQLite WAL NORMAL" in alone.reference_label
    stored = next(row for row in rows if row.key == "concurrent/steps-100/sqlite-normal")
    assert stored.durably is not None and stored.durably.median > 0
    statements = next(row for row in rows if row.key == "concurrent/checkpoint-100/sqlite-normal")
    assert statements.durably is not None and statements.durably.median > 0
    assert statements.reference is not None and statements.reference.median > 0
    assert list(tmp_path.iterdir()) == [], "sample databases were left behind"


def _steps_row(key: str, steps: float, raw: float) -> Row:
    return Row(
        scenario="2. concurrent",
        metric="steps/s, 100 at a time",
        unit="steps/s",
        backend=key,
        higher_is_better=True,
        durably=summarize([steps]),
        reference=summarize([raw]),
        key=f"concurrent/steps-100/{key}",
    )


def test_a_missed_concurrency_target_says_what_the_engine_alone_reaches() -> None:
    missed = [
        _steps_row("sqlite-normal", 25_000, 50_000),
        _steps_row("engine-alone", 40_000, 50_000),
    ]
    normal = next(v for v in report.verdicts(missed) if "SQLite NORMAL: steps/s" in v.target)
    assert normal.met is False
    assert normal.measured == (
        "0.5x (the engine alone, storing nothing: 0.8x of the fastest raw rate)"
    )

    statements = Row(
        scenario="2. concurrent",
        metric="durably's checkpoint statement by the bare driver, 100 at a time",
        unit="checkpoints/s",
        backend="SQLite NORMAL",
        higher_is_better=True,
        durably=summarize([100_000]),
        reference=summarize([50_000]),
        key="concurrent/checkpoint-100/sqlite-normal",
    )
    normal = next(
        v for v in report.verdicts([*missed, statements]) if "SQLite NORMAL: steps/s" in v.target
    )
    assert normal.measured == (
        "0.5x (the engine alone, storing nothing: 0.8x of the fastest raw rate; the store's "
        "checkpoint statements alone, 100 per commit: 2.00x. Per step: durably 40.0 µs "
        "against the raw commit's 20.0 µs; the engine alone takes 25.0 µs and the "
        "checkpoint statements alone 10.0 µs, which leaves 5.00 µs to the rest (the "
        "store's Python, the wait for each batch's commit, the workflow rows))"
    )

    stalled = _steps_row("sqlite-normal", 0, 50_000)  # no step: no time per step
    normal = next(
        v
        for v in report.verdicts([stalled, missed[1], statements])
        if "SQLite NORMAL: steps/s" in v.target
    )
    assert normal.measured.endswith("100 per commit: 2.00x)"), normal.measured

    met = [_steps_row("sqlite-normal", 60_000, 50_000), missed[1]]
    normal = next(v for v in report.verdicts(met) if "SQLite NORMAL: steps/s" in v.target)
    assert normal.met is True
    assert "engine alone" not in normal.measured


def test_only_a_full_run_replaces_the_published_page(tmp_path: Path) -> None:
    """A quick or partial (--only) run writes nothing unless --output says where."""
    from bench.__main__ import REPOSITORY, output_directory

    assert output_directory(None, quick=False, only=None) == REPOSITORY / "docs"
    assert output_directory(None, quick=True, only=None) is None
    assert output_directory(None, quick=False, only=["concurrent"]) is None
    assert output_directory(tmp_path, quick=False, only=["concurrent"]) == tmp_path


async def test_worker_rates_come_from_the_recorded_timestamps(postgres_schema: str) -> None:
    """The PostgreSQL worker scenario's rates are read from durably's timestamps: the
    middle 80% of the steps by finish time over the time they took, and workflows over
    the span from the first step's start to the last workflow's finish."""
    import psycopg
    from bench.observe import StatusCounter

    from durably.store.postgres import PostgresStore

    postgres_url = require_postgres()
    store = PostgresStore(postgres_url, schema=postgres_schema)
    await store.open()  # creates the schema
    await store.close()
    ms = 1_000
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'SET search_path TO "{postgres_schema}"')
        for workflow in range(10):
            connection.execute(
                "INSERT INTO workflows (workflow_id, workflow_name, status, version,"
                " serializer, created_at, updated_at, finished_at)"
                " VALUES (%s, 'w', 'COMPLETED', '', 'json', 0, 0, %s)",
                (f"w{workflow}", (workflow * 10 + 9) * ms + 500),
            )
            for seq in range(10):  # step n (0..99) starts at n ms, finishes 1 ms later
                step = workflow * 10 + seq
                connection.execute(
                    "INSERT INTO operations (workflow_id, seq, kind, name, status,"
                    " serializer, attempts, started_at, finished_at)"
                    " VALUES (%s, %s, 'STEP', 's', 'COMPLETED', 'json', 1, %s, %s)",
                    (f"w{workflow}", seq, step * ms, (step + 1) * ms),
                )
    counter = StatusCounter(
        {"kind": "postgres", "url": postgres_url, "schema": postgres_schema}, "durably"
    )
    try:
        assert counter.count() == 10
        steady, span = counter.processing_figures()
    finally:
        counter.close()
    # The 10th and 90th percentiles of the finish times: 10 ms and 90 ms.
    assert steady == pytest.approx(0.8 * 100 / 0.080)
    assert span == pytest.approx(0.0995)  # from 0 to the last workflow's 99.5 ms

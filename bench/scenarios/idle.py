"""Scenario 5: the idle cost of 100,000 workflows suspended on a signal wait.

One process starts the workflows, 500 at a time, each batch once the previous one is
waiting (DBOS: one at a time); each waits for a signal (DBOS: ``recv``), durably with
``inline_wait=0`` (its default keeps a wait in memory for its first second, so a batch
took a second to suspend). Once all are
waiting: the process's resident memory (and its growth per waiting
workflow) and the database rows per workflow. Then every signal is sent at once (100
concurrent senders) and the time until all workflows are complete is measured.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from bench.protocol import peak_rss_bytes, rss_bytes
from bench.suite import Backend, Bench, Row, Samples

NAME = "idle"
TITLE = "5. Idle cost: 100,000 workflows suspended on a signal, then all woken"
MODULE = "scenarios.idle"
SENDERS = 100
#: Workflows started together; the next batch starts once these are suspended.
BATCH = 500


async def durably_run(where: dict[str, Any], workflows: int, senders: int) -> dict[str, Any]:
    """Suspend, measure, wake, measure."""
    from bench.apps import make_app
    from durably import Context, Observer, WorkflowStatus
    from durably.observers import RunEnd, RunInfo

    class RunEnds(Observer):
        """Counts the runs that ended suspended or completed, in the process (as the
        DBOS driver counts its waits): counting 100,000 rows in the database every
        10 ms blocked the measured event loop for milliseconds each time."""

        def __init__(self) -> None:
            self.suspended = 0
            self.completed = 0

        def on_workflow_run_end(self, run: RunInfo, end: RunEnd) -> None:
            if end.status is WorkflowStatus.SUSPENDED:
                self.suspended += 1
            elif end.status is WorkflowStatus.COMPLETED:
                self.completed += 1

    ends = RunEnds()
    # Waits unwind at once (the default keeps a wait in memory for its first second):
    # what is measured is the cost of workflows suspended in the store.
    app = make_app(where, inline_wait=0, observers=[ends])

    @app.workflow(name="waiting")
    async def waiting(ctx: Context) -> str:
        return str(await ctx.wait_signal("go"))

    async with app:
        gc.collect()
        rss_before = rss_bytes()
        started = time.perf_counter()
        first_part = max(workflows // 10, 1)
        rss_first_part = 0
        for first, last in ((0, first_part), (first_part, workflows)):
            for batch in range(first, last, BATCH):
                top = min(batch + BATCH, last)
                await asyncio.gather(
                    *(app.start(waiting, workflow_id=f"wf-{index}") for index in range(batch, top))
                )
                # Each batch waits before the next starts: the memory measured is what
                # suspended workflows keep, not the peak of thousands starting at once.
                while ends.suspended < top:  # noqa: ASYNC110 -- polls a database or counter, not an event
                    await asyncio.sleep(0.01)
            if first == 0:
                gc.collect()
                rss_first_part = rss_bytes()
        start_seconds = time.perf_counter() - started
        gc.collect()
        rss_suspended = rss_bytes()
        rows = _count_rows(where)
        queue = iter(range(workflows))

        async def sender() -> None:
            for index in queue:
                await app.send_signal(f"wf-{index}", "go", "go")

        woke = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        while ends.completed < workflows:  # noqa: ASYNC110 -- polls a database or counter, not an event
            await asyncio.sleep(0.01)
        wake_seconds = time.perf_counter() - woke
    return {
        "start_seconds": start_seconds,
        "wake_seconds": wake_seconds,
        "rss_before": rss_before,
        "rss_suspended": rss_suspended,
        "rss_first_part": rss_first_part,
        "first_part": first_part,
        "peak_rss": peak_rss_bytes(),
        "rows": rows,
    }


def _count_rows(where: dict[str, Any]) -> int:
    """Rows in durably's tables (workflows, operations, attempts, signals), without
    the bookkeeping of the schema version and of live executors."""
    skip = {"schema_version", "executors"}
    if where["kind"] == "sqlite":
        import sqlite3

        connection = sqlite3.connect(where["path"], timeout=30)
        try:
            names = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
                if not name.startswith("sqlite_") and name not in skip
            ]
            return sum(
                connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names
            )
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(where["url"], autocommit=True) as connection:
        names = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (where["schema"],),
            )
            if name not in skip
        ]
        total = 0
        for name in names:
            row = connection.execute(
                f'SELECT count(*) FROM "{where["schema"]}"."{name}"'
            ).fetchone()
            assert row is not None
            total += int(row[0])
        return total


def run(bench: Bench) -> list[Row]:
    """Each backend, repetitions interleaved; DBOS on fewer workflows (see the row)."""
    workflows = bench.heavy_size(100_000, 200)
    # DBOS keeps every waiting workflow in memory and polls for its message; on
    # SQLite it commits some 70 times a second here. It runs 500 (figures per
    # workflow and per second are comparable at any size).
    dbos_workflows = min(bench.size(500, 50), workflows)
    samples, notes = Samples(), {}
    for repetition in range(bench.repeat):
        for backend in bench.backends:
            bench.progress(f"{NAME} {backend.label} repetition {repetition + 1}")
            with bench.location(backend) as where:
                result = bench.durably(
                    MODULE, "durably_run", where=where, workflows=workflows, senders=SENDERS
                )
            _add(samples, f"durably/{backend.key}", result, workflows)
            if backend.compare_dbos:

                def take(backend: Backend = backend) -> float:
                    with bench.location(backend) as where:
                        result = bench.dbos(
                            NAME, where=where, workflows=dbos_workflows, senders=SENDERS
                        )
                    _add(samples, f"dbos/{backend.key}", result, dbos_workflows)
                    return 0.0

                bench.try_dbos(samples, notes, f"dbos-ok/{backend.key}", take)
    rows = []
    for backend in bench.backends:
        note = notes.get(f"dbos-ok/{backend.key}", "")
        own, other = f"durably/{backend.key}", f"dbos/{backend.key}"
        scaled = f"DBOS ran {dbos_workflows:,} workflows" if backend.compare_dbos else ""
        common = {"scenario": TITLE, "backend": backend.label}
        rows += [
            Row(
                **common,
                metric=f"RSS with {workflows:,} workflows suspended",
                unit="MiB",
                higher_is_better=False,
                durably=samples.summary(f"{own}/rss"),
                dbos_note=note or ("see next row" if backend.compare_dbos else ""),
            ),
            Row(
                **common,
                metric="RSS growth per suspended workflow (from 10% to 100% suspended)",
                unit="bytes",
                higher_is_better=False,
                durably=samples.summary(f"{own}/rss-per"),
                dbos=samples.summary(f"{other}/rss-per"),
                dbos_note=note,
                note=scaled,
                key=f"idle/rss-per-workflow/{backend.key}",
            ),
            Row(
                **common,
                metric="database rows per suspended workflow",
                unit="rows",
                higher_is_better=False,
                durably=samples.summary(f"{own}/rows"),
                dbos=samples.summary(f"{other}/rows"),
                dbos_note=note,
            ),
            Row(
                **common,
                metric="suspended workflows started per second (durably: inline_wait=0)",
                unit="workflows/s",
                higher_is_better=True,
                durably=samples.summary(f"{own}/start"),
                dbos=samples.summary(f"{other}/start"),
                dbos_note=note,
            ),
            Row(
                **common,
                metric=f"all woken at once: time until all {workflows:,} complete",
                unit="s",
                higher_is_better=False,
                durably=samples.summary(f"{own}/wake-seconds"),
                dbos_note=note or ("see next row" if backend.compare_dbos else ""),
            ),
            Row(
                **common,
                metric="all woken at once: completed workflows/s",
                unit="workflows/s",
                higher_is_better=True,
                durably=samples.summary(f"{own}/wake"),
                dbos=samples.summary(f"{other}/wake"),
                dbos_note=note,
            ),
        ]
    return rows


def _add(samples: Samples, prefix: str, result: dict[str, Any], workflows: int) -> None:
    # The growth between 10% and 100% of the workflows suspended: the cost of one
    # more waiting workflow, without the start-up of the first ones (imports,
    # caches, pools).
    grown = result["rss_suspended"] - result["rss_first_part"]
    samples.add(f"{prefix}/rss", result["rss_suspended"] / 2**20)
    samples.add(f"{prefix}/rss-per", max(grown, 0) / (workflows - result["first_part"]))
    samples.add(f"{prefix}/rows", result["rows"] / workflows)
    samples.add(f"{prefix}/start", workflows / result["start_seconds"])
    samples.add(f"{prefix}/wake-seconds", result["wake_seconds"])
    samples.add(f"{prefix}/wake", workflows / result["wake_seconds"])

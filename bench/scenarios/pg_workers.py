"""Scenario 7: PostgreSQL with 1, 2 and 4 worker processes (``durably worker``'s
``serve``), next to the raw PostgreSQL single-row commit rate of the same run.

A client app (``worker=False``) first creates the workflows (10 trivial steps each,
``PENDING``); then the worker processes are started together, and the parent waits
until the database counts them all complete. The rates come from the timestamps
durably recorded, read afterwards: steps per second over the middle 80% of the steps
by finish time (steady state), and workflows per second over the processing span,
from the first step's start to the last workflow's finish (process start-up is not
in it). The time until all are complete, from starting the workers, is shown too.

(Rates taken from when 10% and 90% of the *workflows* had completed were wrong:
workers claim hundreds of workflows at once, which then advance in step and finish
together, so that window could be a fraction of the run.)
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import timedelta
from typing import Any

from bench.measure import BenchError, Child
from bench.observe import StatusCounter
from bench.protocol import emit_ready
from bench.suite import POSTGRES, Bench, Row, Samples

NAME = "pg_workers"
TITLE = "7. PostgreSQL with 1, 2 and 4 worker processes"
MODULE = "scenarios.pg_workers"
STEPS = 10
WORKERS = (1, 2, 4)


def build_app(where: dict[str, Any], **options: Any) -> Any:
    """The app of the client and of every worker (durably's defaults otherwise)."""
    from bench.apps import make_app, trivial
    from durably import Context

    app = make_app(where, **options)

    @app.workflow(name="ten_steps")
    async def ten_steps(ctx: Context, count: int) -> int:
        value = 0
        for index in range(count):
            value = await ctx.step(f"step-{index}", trivial, value)
        return value

    return app


async def durably_enqueue(where: dict[str, Any], workflows: int) -> dict[str, Any]:
    """Create ``workflows`` pending workflows from a client app."""
    app = build_app(where, worker=False)
    async with app:
        batch = 200
        for first in range(0, workflows, batch):
            await asyncio.gather(
                *(
                    app.start("ten_steps", STEPS, workflow_id=f"wf-{index}")
                    for index in range(first, min(first + batch, workflows))
                )
            )
    return {"workflows": workflows}


async def durably_worker(where: dict[str, Any], executor_id: str) -> None:
    """One worker process: ``serve`` until SIGTERM."""
    from durably.worker_process import LOG_FORMAT, serve

    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr)
    app = build_app(where, executor_id=executor_id)
    emit_ready(executor_id)
    await serve(app, grace=timedelta(seconds=5))


def measure(bench: Bench, workers: int, workflows: int) -> tuple[float, float, float]:
    """(steady-state steps/s, workflows/s over the processing span, seconds until all
    complete from starting the workers) for ``workers`` workers."""
    with bench.location(POSTGRES) as where:
        bench.durably(MODULE, "durably_enqueue", where=where, workflows=workflows)
        counter = StatusCounter(where, "durably")
        children: list[Child] = []
        try:
            children = [
                bench.durably_child(
                    MODULE, "durably_worker", where=where, executor_id=f"worker-{number}"
                )
                for number in range(workers)
            ]
            started = children[0].started
            deadline = time.monotonic() + bench.timeout
            while counter.count() < workflows:
                if time.monotonic() > deadline:
                    raise BenchError(f"{workers} workers did not finish {workflows} workflows")
                for child in children:
                    if child.process.poll() is not None:
                        raise BenchError(f"a worker exited early: {child.result(timeout=5)}")
                time.sleep(0.02)
            finished = time.perf_counter()
            steady, span = counter.processing_figures()
        finally:
            for child in children:
                child.terminate()
            counter.close()
    return steady, workflows / span, finished - started


def run(bench: Bench) -> list[Row]:
    """1, 2 and 4 workers, repetitions interleaved with the raw PostgreSQL reference."""
    if POSTGRES not in bench.backends:
        return []
    workflows = bench.size(3000, 100)
    samples = Samples()
    for repetition in range(bench.repeat):
        for workers in WORKERS:
            bench.progress(f"{NAME} {workers} worker(s) repetition {repetition + 1}")
            samples.add("raw", bench.raw_commit_rate(POSTGRES))
            steps, workflow_rate, total = measure(bench, workers, workflows)
            samples.add(f"workflows/{workers}", workflow_rate)
            samples.add(f"steps/{workers}", steps)
            samples.add(f"seconds/{workers}", total)
    reason = (
        "not measured: DBOS distributes work across processes through its queues, "
        "a different design; this suite has no DBOS multi-process driver yet"
    )
    rows = []
    raw = samples.summary("raw")
    for workers in WORKERS:
        common = {"scenario": TITLE, "backend": POSTGRES.label, "dbos_note": reason}
        rows += [
            Row(
                **common,
                metric=(
                    f"workflows/s, {workers} worker process(es) "
                    f"(first step started to last workflow finished)"
                ),
                unit="workflows/s",
                higher_is_better=True,
                durably=samples.summary(f"workflows/{workers}"),
                # a workflow of 10 steps is 12 writes: beside the commit rate, its ratio
                # shows what group commit buys per workflow
                reference=raw,
                reference_label=f"{POSTGRES.raw_label}, 1 row/commit",
                key=f"pg_workers/workflows/{workers}",
            ),
            Row(
                **common,
                metric=(
                    f"steps/s, {workers} worker process(es) "
                    f"(steady state: the middle 80% of steps by finish time)"
                ),
                unit="steps/s",
                higher_is_better=True,
                durably=samples.summary(f"steps/{workers}"),
                reference=raw,
                reference_label=f"{POSTGRES.raw_label}, 1 row/commit",
                key=f"pg_workers/steps/{workers}",
            ),
            Row(
                **common,
                metric=(
                    f"time until all {workflows:,} complete, {workers} worker(s), "
                    f"from starting the processes"
                ),
                unit="s",
                higher_is_better=False,
                durably=samples.summary(f"seconds/{workers}"),
            ),
        ]
    return rows

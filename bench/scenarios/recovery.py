"""Scenario 3: 10,000 interrupted workflows (the process is killed with SIGKILL),
recovered by a new process: the time from starting that process until every
workflow is complete (counted from outside, in the database).

The first process starts the workflows; each records a step and then hangs in its
second step; once all of them hang, the parent kills the process. The new process
uses the same executor id (as a restarted service does, and as DBOS's default
executor ``local`` does), so it takes its work back at once instead of waiting for
leases to expire.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.measure import wait_until
from bench.observe import StatusCounter
from bench.protocol import emit_ready
from bench.suite import Backend, Bench, Row, Samples

NAME = "recovery"
TITLE = "3. Recovery of 10,000 workflows interrupted by SIGKILL"
MODULE = "scenarios.recovery"
EXECUTOR_ID = "bench-executor"

#: In the process that is killed, the last step never returns (a process-wide flag,
#: not an input: the recovering process replays the same recorded input).
_hanging = [False]
_entered: list[float] = []


async def _last_step(value: int) -> int:
    _entered.append(time.perf_counter())
    if _hanging[0]:
        await asyncio.Event().wait()
    return value + 1


def build_app(where: dict[str, Any]) -> Any:
    """The app both processes build: ``steps`` trivial steps, then the last step."""
    from bench.apps import make_app, trivial
    from durably import Context

    app = make_app(where, executor_id=EXECUTOR_ID)

    @app.workflow(name="interrupted")
    async def interrupted(ctx: Context, steps: int) -> int:
        value = 0
        for index in range(steps):
            value = await ctx.step(f"step-{index}", trivial, value)
        return await ctx.step("last", _last_step, value)

    return app


async def durably_interrupt(where: dict[str, Any], workflows: int, steps: int) -> None:
    """Start the workflows, report ready once every one hangs in its last step (its
    earlier steps are committed by then), and wait to be killed."""
    _hanging[0] = True
    app = build_app(where)
    async with app:
        batch = 500
        for first in range(0, workflows, batch):
            await asyncio.gather(
                *(
                    app.start("interrupted", steps, workflow_id=f"wf-{index}")
                    for index in range(first, min(first + batch, workflows))
                )
            )
        while len(_entered) < workflows:  # noqa: ASYNC110 -- polls a database or counter, not an event
            await asyncio.sleep(0.01)
        emit_ready(str(workflows))
        await asyncio.Event().wait()


async def durably_recover(where: dict[str, Any]) -> None:
    """Open the app (which recovers this executor's work) and run until killed."""
    app = build_app(where)
    emit_ready("opening")
    async with app:
        await asyncio.Event().wait()


async def durably_resume(where: dict[str, Any]) -> dict[str, Any]:
    """Seconds from opening the app until the recovered workflow's last step starts
    (every recorded step replayed before it)."""
    app = build_app(where)
    started = time.perf_counter()
    async with app:
        while not _entered:  # noqa: ASYNC110 -- polls a database or counter, not an event
            await asyncio.sleep(0.0005)
        return {"seconds": _entered[0] - started}


def interrupt(bench: Bench, system: str, where: dict[str, Any], workflows: int, steps: int) -> None:
    """Run the first process of ``system`` until every workflow hangs, then SIGKILL it."""
    if system == "durably":
        child = bench.durably_child(
            MODULE, "durably_interrupt", where=where, workflows=workflows, steps=steps
        )
    else:
        child = bench.dbos_child("interrupt", where=where, workflows=workflows, steps=steps)
    try:
        child.wait_ready(timeout=bench.timeout)
    finally:
        child.kill()


def recover(bench: Bench, system: str, where: dict[str, Any], workflows: int) -> float:
    """Seconds from starting the new process until all ``workflows`` are complete."""
    counter = StatusCounter(where, system)
    try:
        if system == "durably":
            child = bench.durably_child(MODULE, "durably_recover", where=where)
        else:
            child = bench.dbos_child("recover_all", where=where)
        try:
            finished = wait_until(
                lambda: counter.count() >= workflows,
                timeout=bench.timeout,
                what=f"{system} recovered {workflows} workflows",
            )
        finally:
            child.kill()
        return finished - child.started
    finally:
        counter.close()


def run(bench: Bench) -> list[Row]:
    """Each backend, repetitions interleaved; DBOS on fewer workflows (see the row)."""
    workflows = bench.heavy_size(10_000, 100)
    # DBOS's SQLite default commits some 70 times a second here: 10,000 workflows
    # would take many minutes to set up per sample. Its figure is a rate.
    dbos_workflows = min(bench.size(1_000, 50), workflows)
    samples, notes = Samples(), {}
    for repetition in range(bench.repeat):
        for backend in bench.backends:
            bench.progress(f"{NAME} {backend.label} repetition {repetition + 1}")
            with bench.location(backend) as where:
                interrupt(bench, "durably", where, workflows, steps=1)
                seconds = recover(bench, "durably", where, workflows)
            samples.add(f"durably-seconds/{backend.key}", seconds)
            samples.add(f"durably/{backend.key}", workflows / seconds)
            if backend.compare_dbos:

                def take(backend: Backend = backend) -> float:
                    with bench.location(backend) as where:
                        interrupt(bench, "dbos", where, dbos_workflows, steps=1)
                        seconds = recover(bench, "dbos", where, dbos_workflows)
                    samples.add(f"dbos-seconds/{backend.key}", seconds)
                    return dbos_workflows / seconds

                bench.try_dbos(samples, notes, f"dbos/{backend.key}", take)
    rows = []
    for backend in bench.backends:
        note = notes.get(f"dbos/{backend.key}", "")
        common = {"scenario": TITLE, "backend": backend.label}
        scaled = f"DBOS recovered {dbos_workflows:,} workflows" if backend.compare_dbos else ""
        rows += [
            Row(
                **common,
                metric=f"time until all {workflows:,} are complete, from process start",
                unit="s",
                higher_is_better=False,
                durably=samples.summary(f"durably-seconds/{backend.key}"),
                dbos_note=note or ("see next row" if backend.compare_dbos else ""),
            ),
            Row(
                **common,
                metric="recovered workflows/s (1 replayed + 1 live step each)",
                unit="workflows/s",
                higher_is_better=True,
                durably=samples.summary(f"durably/{backend.key}"),
                dbos=samples.summary(f"dbos/{backend.key}"),
                dbos_note=note,
                note=scaled,
            ),
        ]
    return rows

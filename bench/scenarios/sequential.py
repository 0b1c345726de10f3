"""Scenario 1: one workflow of 1,000 trivial steps, run sequentially.

Steps per second and the mean time per step, next to the raw single-row commit rate
(the most a step that must be committed before the next one starts could reach) and
DBOS running the same workflow.
"""

from __future__ import annotations

import time
from typing import Any

from bench.measure import mapped
from bench.suite import Backend, Bench, Row, Samples

NAME = "sequential"
TITLE = "1. One workflow of 1,000 sequential trivial steps"
MODULE = "scenarios.sequential"


async def durably_run(where: dict[str, Any], steps: int) -> dict[str, Any]:
    """Seconds to run one workflow of ``steps`` trivial steps (after a warm-up run)."""
    from bench.apps import make_app, trivial
    from durably import Context

    app = make_app(where)

    @app.workflow(name="sequential")
    async def sequential(ctx: Context, count: int) -> int:
        value = 0
        for index in range(count):
            value = await ctx.step(f"step-{index}", trivial, value)
        return value

    async with app:
        await app.run(sequential, 2, workflow_id="warm-up")
        started = time.perf_counter()
        result = await app.run(sequential, steps, workflow_id="measured")
        elapsed = time.perf_counter() - started
    assert result == steps
    return {"seconds": elapsed}


def run(bench: Bench) -> list[Row]:
    """Measure every backend, repetitions interleaved with the references."""
    steps = bench.size(1000, 200)
    samples, notes = Samples(), {}
    for repetition in range(bench.repeat):
        for backend in bench.backends:
            bench.progress(f"{NAME} {backend.label} repetition {repetition + 1}")
            raw_rate = bench.raw_commit_rate(backend)
            samples.add(f"raw/{backend.key}", raw_rate)
            with bench.location(backend) as where:
                seconds = bench.durably(MODULE, "durably_run", where=where, steps=steps)["seconds"]
            samples.add(f"durably/{backend.key}", steps / seconds)
            samples.add(f"durably-us/{backend.key}", seconds / steps * 1e6)
            samples.add(f"overhead/{backend.key}", seconds / steps * 1e6 - 1e6 / raw_rate)
            if backend.kind == "sqlite":
                samples.add(f"checkpoint/{backend.key}", bench.checkpoint_commit_rate(backend))
            if backend.compare_dbos:

                def take(backend: Backend = backend) -> float:
                    with bench.location(backend) as where:
                        return steps / float(bench.dbos(NAME, where=where, steps=steps)["seconds"])

                bench.try_dbos(samples, notes, f"dbos/{backend.key}", take)
    rows = []
    for backend in bench.backends:
        dbos_rate = samples.summary(f"dbos/{backend.key}")
        dbos_note = notes.get(f"dbos/{backend.key}", "")
        raw = samples.summary(f"raw/{backend.key}")
        common = {"scenario": TITLE, "backend": backend.label}
        rows.append(
            Row(
                **common,
                metric=f"steps/s ({steps} steps, 1 workflow)",
                key=f"sequential/steps/{backend.key}",
                unit="steps/s",
                higher_is_better=True,
                durably=samples.summary(f"durably/{backend.key}"),
                reference=raw,
                reference_label=f"{backend.raw_label}, 1 row/commit",
                dbos=dbos_rate,
                dbos_note=dbos_note,
            )
        )
        rows.append(
            Row(
                **common,
                metric="mean time per step",
                unit="µs",
                higher_is_better=False,
                durably=samples.summary(f"durably-us/{backend.key}"),
                reference=mapped(raw, lambda rate: 1e6 / rate),
                reference_label=f"{backend.raw_label}: µs per 1-row commit",
                dbos=mapped(dbos_rate, lambda rate: 1e6 / rate),
                dbos_note=dbos_note,
            )
        )
        rows.append(
            Row(
                **common,
                metric="mean overhead per step (time per step minus time per raw commit)",
                unit="µs",
                higher_is_better=False,
                durably=samples.summary(f"overhead/{backend.key}"),
            )
        )
        if backend.kind == "sqlite":
            rows.append(
                Row(
                    **common,
                    metric="steps/s against durably's own checkpoint SQL (the engine's share)",
                    unit="steps/s",
                    higher_is_better=True,
                    durably=samples.summary(f"durably/{backend.key}"),
                    reference=samples.summary(f"checkpoint/{backend.key}"),
                    reference_label=(
                        f"durably's checkpoint statement by the bare driver, "
                        f"{backend.synchronous}, 1 per commit"
                    ),
                )
            )
    return rows

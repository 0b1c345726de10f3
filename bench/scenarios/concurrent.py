"""Scenario 2: 1,000 workflows of 10 trivial steps, 1 at a time and 100 at a time.

Clients in the measured process start a workflow and wait for its result, each as
soon as its previous one finished (a closed loop of 1 or 100 clients). Workflows
and steps per second, and the p50 / p99 time from ``start`` to result. At 100 at a
time, the steps of many workflows share commits (group commit): compare steps/s with
the raw single-row commit rate of the same durability level.

The same 100 clients also run on durably's ``MemoryStore``, which stores nothing: the
engine alone (Python and asyncio: starting, stepping, encoding, waiting for results),
the most steps per second any store could give this process. On SQLite, the bare
driver also runs durably's checkpoint statement for 100 workflows of 10 steps at a
time, one checkpoint of each per commit, with no engine: the most steps per second
durably's schema allows 100 concurrent workflows. The engine and the statements share
one thread, so durably's rate is below both.
"""

from __future__ import annotations

import time
from typing import Any

from bench.measure import percentile
from bench.suite import Backend, Bench, Row, Samples

NAME = "concurrent"
#: The samples' key for the engine alone (MemoryStore).
ENGINE_ALONE = "engine-alone"
TITLE = "2. 1,000 workflows of 10 steps, 1 and 100 at a time"
MODULE = "scenarios.concurrent"
STEPS = 10


async def durably_run(
    where: dict[str, Any], workflows: int, steps: int, concurrency: int
) -> dict[str, Any]:
    """Run the workflows through ``concurrency`` closed-loop clients."""
    import asyncio

    from bench.apps import make_app, trivial
    from durably import Context

    app = make_app(where)

    @app.workflow(name="ten_steps")
    async def ten_steps(ctx: Context, count: int) -> int:
        value = 0
        for index in range(count):
            value = await ctx.step(f"step-{index}", trivial, value)
        return value

    latencies: list[float] = []
    queue = iter(range(workflows))

    async def client() -> None:
        for index in queue:
            began = time.perf_counter()
            handle = await app.start(ten_steps, steps, workflow_id=f"wf-{index}")
            assert await handle.result() == steps
            latencies.append(time.perf_counter() - began)

    async with app:
        await app.run(ten_steps, 2, workflow_id="warm-up")
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "latencies": latencies}


def run(bench: Bench) -> list[Row]:
    """Each backend at concurrency 1 and 100, repetitions interleaved."""
    workflows = bench.size(1000, 40)
    # DBOS on this machine runs tens of steps per second on SQLite: the same workload
    # at full size would take many minutes per sample, so it runs fewer workflows
    # (its figures are rates and percentiles, comparable at any size).
    dbos_workflows = {1: bench.size(50, 20), 100: bench.size(200, 40)}
    samples, notes = Samples(), {}
    for repetition in range(bench.repeat):
        bench.progress(f"{NAME} engine alone (MemoryStore) x100 repetition {repetition + 1}")
        result = bench.durably(
            MODULE,
            "durably_run",
            where={"kind": "memory"},
            workflows=workflows,
            steps=STEPS,
            concurrency=100,
        )
        _add(samples, f"durably/100/{ENGINE_ALONE}", result, workflows)
        for backend in bench.backends:
            samples.add(f"raw/{backend.key}", bench.raw_commit_rate(backend))
            if backend.kind == "sqlite":
                samples.add(
                    f"checkpoint-100/{backend.key}",
                    bench.checkpoint_commit_rate(
                        backend,
                        rows_per_commit=100,
                        steps_per_workflow=STEPS,
                        max_rows=bench.size(100_000, 20_000),
                    ),
                )
            for concurrency in (1, 100):
                bench.progress(f"{NAME} {backend.label} x{concurrency} repetition {repetition + 1}")
                with bench.location(backend) as where:
                    result = bench.durably(
                        MODULE,
                        "durably_run",
                        where=where,
                        workflows=workflows,
                        steps=STEPS,
                        concurrency=concurrency,
                    )
                _add(samples, f"durably/{concurrency}/{backend.key}", result, workflows)
                if backend.compare_dbos:
                    count = dbos_workflows[concurrency]

                    def take(
                        backend: Backend = backend,
                        concurrency: int = concurrency,
                        count: int = count,
                    ) -> float:
                        with bench.location(backend) as where:
                            result = bench.dbos(
                                NAME,
                                where=where,
                                workflows=count,
                                steps=STEPS,
                                concurrency=concurrency,
                            )
                        _add(samples, f"dbos/{concurrency}/{backend.key}", result, count)
                        return count / float(result["seconds"])

                    bench.try_dbos(samples, notes, f"dbos-wf/{concurrency}/{backend.key}", take)
    rows = [_engine_alone(bench, samples, workflows)]
    for backend in bench.backends:
        raw = samples.summary(f"raw/{backend.key}")
        if backend.kind == "sqlite":
            rows.append(
                Row(
                    scenario=TITLE,
                    backend=backend.label,
                    metric="durably's checkpoint statement by the bare driver, 100 workflows of "
                    f"{STEPS} steps at a time, one checkpoint of each per commit: the store's "
                    "SQL alone, no engine",
                    unit="checkpoints/s",
                    higher_is_better=True,
                    durably=samples.summary(f"checkpoint-100/{backend.key}"),
                    reference=raw,
                    reference_label=f"{backend.raw_label}, 1 row/commit",
                    key=f"concurrent/checkpoint-100/{backend.key}",
                )
            )
        for concurrency in (1, 100):
            own, other = f"durably/{concurrency}/{backend.key}", f"dbos/{concurrency}/{backend.key}"
            note = notes.get(f"dbos-wf/{concurrency}/{backend.key}", "")
            scaled = (
                f"DBOS ran {dbos_workflows[concurrency]:,} workflows"
                if backend.compare_dbos
                else ""
            )
            common = {"scenario": TITLE, "backend": backend.label, "dbos_note": note}
            rows += [
                Row(
                    **common,
                    metric=f"workflows/s, {concurrency} at a time ({workflows:,} workflows)",
                    unit="workflows/s",
                    higher_is_better=True,
                    durably=samples.summary(f"{own}/workflows"),
                    dbos=samples.summary(f"{other}/workflows"),
                    note=scaled,
                ),
                Row(
                    **common,
                    metric=f"steps/s, {concurrency} at a time",
                    unit="steps/s",
                    higher_is_better=True,
                    durably=samples.summary(f"{own}/steps"),
                    reference=raw,
                    reference_label=f"{backend.raw_label}, 1 row/commit",
                    dbos=samples.summary(f"{other}/steps"),
                    key=f"concurrent/steps-{concurrency}/{backend.key}",
                ),
                Row(
                    **common,
                    metric=f"p50 start-to-result latency, {concurrency} at a time",
                    unit="ms",
                    higher_is_better=False,
                    durably=samples.summary(f"{own}/p50"),
                    dbos=samples.summary(f"{other}/p50"),
                ),
                Row(
                    **common,
                    metric=f"p99 start-to-result latency, {concurrency} at a time",
                    unit="ms",
                    higher_is_better=False,
                    durably=samples.summary(f"{own}/p99"),
                    dbos=samples.summary(f"{other}/p99"),
                ),
            ]
    return rows


def _engine_alone(bench: Bench, samples: Samples, workflows: int) -> Row:
    """Steps/s of the engine storing nothing, next to the fastest raw commit rate of
    the run: the ceiling of every store's "100 at a time" figure."""
    raws = [
        (summary.median, backend)
        for backend in bench.backends
        if (summary := samples.summary(f"raw/{backend.key}")) is not None
    ]
    fastest = max(raws, key=lambda pair: pair[0])[1] if raws else None
    return Row(
        scenario=TITLE,
        backend="none (MemoryStore)",
        metric=f"steps/s, 100 at a time, the engine alone: nothing stored ({workflows:,} "
        f"workflows)",
        unit="steps/s",
        higher_is_better=True,
        durably=samples.summary(f"durably/100/{ENGINE_ALONE}/steps"),
        reference=None if fastest is None else samples.summary(f"raw/{fastest.key}"),
        reference_label="" if fastest is None else f"{fastest.raw_label}, 1 row/commit",
        key=f"concurrent/steps-100/{ENGINE_ALONE}",
    )


def _add(samples: Samples, prefix: str, result: dict[str, Any], workflows: int) -> None:
    seconds = float(result["seconds"])
    latencies = [float(value) for value in result["latencies"]]
    samples.add(f"{prefix}/workflows", workflows / seconds)
    samples.add(f"{prefix}/steps", workflows * STEPS / seconds)
    samples.add(f"{prefix}/p50", percentile(latencies, 0.50) * 1000)
    samples.add(f"{prefix}/p99", percentile(latencies, 0.99) * 1000)

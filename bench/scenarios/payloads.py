"""Scenario 6: payload sizes, 100 B, 10 KB and 1 MB returned by every step.

One workflow of sequential steps per size: steps per second and MB per second,
next to the raw single-row commit rate of rows of the same size.
"""

from __future__ import annotations

import time
from typing import Any

from bench.suite import Backend, Bench, Row, Samples

NAME = "payloads"
TITLE = "6. Payloads of 100 B, 10 KB and 1 MB per step"
MODULE = "scenarios.payloads"
SIZES = ((100, "100 B"), (10_000, "10 KB"), (1_000_000, "1 MB"))


async def durably_run(where: dict[str, Any], steps: int, size: int) -> dict[str, Any]:
    """Seconds to run one workflow of ``steps`` steps each returning ``size`` bytes."""
    from bench.apps import make_app
    from durably import Context

    app = make_app(where)

    async def payload_step(length: int) -> str:
        return "x" * length

    @app.workflow(name="payloads")
    async def payloads(ctx: Context, count: int, length: int) -> int:
        total = 0
        for index in range(count):
            total += len(await ctx.step(f"step-{index}", payload_step, length))
        return total

    async with app:
        await app.run(payloads, 1, size, workflow_id="warm-up")
        started = time.perf_counter()
        result = await app.run(payloads, steps, size, workflow_id="measured")
        elapsed = time.perf_counter() - started
    assert result == steps * size
    return {"seconds": elapsed}


def run(bench: Bench) -> list[Row]:
    """Each size on each backend, repetitions interleaved."""
    counts = {100: bench.size(500, 50), 10_000: bench.size(500, 50), 1_000_000: bench.size(50, 5)}
    samples, notes = Samples(), {}
    for repetition in range(bench.repeat):
        for backend in bench.backends:
            for size, label in SIZES:
                steps = counts[size]
                bench.progress(f"{NAME} {backend.label} {label} repetition {repetition + 1}")
                samples.add(
                    f"raw/{size}/{backend.key}",
                    bench.raw_commit_rate(backend, payload_bytes=size, max_rows=max(steps, 20)),
                )
                with bench.location(backend) as where:
                    seconds = bench.durably(
                        MODULE, "durably_run", where=where, steps=steps, size=size
                    )["seconds"]
                samples.add(f"durably/{size}/{backend.key}", steps / seconds)
                if backend.compare_dbos:

                    def take(
                        backend: Backend = backend, steps: int = steps, size: int = size
                    ) -> float:
                        with bench.location(backend) as where:
                            result = bench.dbos("payload", where=where, steps=steps, size=size)
                        return steps / float(result["seconds"])

                    bench.try_dbos(samples, notes, f"dbos/{size}/{backend.key}", take)
    rows = []
    for backend in bench.backends:
        for size, label in SIZES:
            rows.append(
                Row(
                    scenario=TITLE,
                    backend=backend.label,
                    metric=f"steps/s with {label} per step ({counts[size]} steps, 1 workflow)",
                    unit="steps/s",
                    higher_is_better=True,
                    durably=samples.summary(f"durably/{size}/{backend.key}"),
                    reference=samples.summary(f"raw/{size}/{backend.key}"),
                    reference_label=f"{backend.raw_label}, 1 row of {label}/commit",
                    dbos=samples.summary(f"dbos/{size}/{backend.key}"),
                    dbos_note=notes.get(f"dbos/{size}/{backend.key}", ""),
                )
            )
    return rows

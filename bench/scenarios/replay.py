"""Scenario 4: the cost of replay, resuming a workflow after step 1,000 of 1,000.

A workflow records 1,000 steps and hangs in the next one; its process is killed; a
new process opens the app and recovers it. Measured in that process: the time from
opening the app (DBOS: ``launch``) until the step after the recorded ones starts,
i.e. every recorded step replayed. The same after 1 recorded step gives the fixed
cost, and the difference the cost per replayed step. Reference: reading the 1,000
rows of one workflow with the bare driver.
"""

from __future__ import annotations

from bench.measure import summarize
from bench.scenarios.recovery import MODULE as RECOVERY_MODULE
from bench.scenarios.recovery import interrupt
from bench.suite import Backend, Bench, Row, Samples

NAME = "replay"
TITLE = "4. Replay: resuming a workflow after step 1,000 of 1,000"


def resume(bench: Bench, system: str, backend: Backend, steps: int) -> float:
    """Seconds the new process takes to replay ``steps`` recorded steps."""
    with bench.location(backend) as where:
        interrupt(bench, system, where, 1, steps)
        if system == "durably":
            result = bench.durably(RECOVERY_MODULE, "durably_resume", where=where)
        else:
            result = bench.dbos("resume", where=where, steps=steps)
    return float(result["seconds"])


def raw_read(bench: Bench, backend: Backend, rows: int) -> float:
    """Seconds to read ``rows`` checkpoint rows with the bare driver."""
    with bench.location(backend) as where:
        if backend.kind == "sqlite":
            result = bench.durably(
                "raw", "sqlite_read_history", path=where["path"], rows=rows, payload_bytes=2
            )
        else:
            result = bench.durably(
                "raw",
                "postgres_read_history",
                url=where["url"],
                schema=where["schema"],
                rows=rows,
                payload_bytes=2,
            )
    return float(result["seconds"])


def run(bench: Bench) -> list[Row]:
    """Each backend: resume after ``steps`` and after 1 step, repetitions interleaved."""
    steps = bench.size(1000, 50)
    samples, notes = Samples(), {}
    for repetition in range(bench.repeat):
        for backend in bench.backends:
            bench.progress(f"{NAME} {backend.label} repetition {repetition + 1}")
            samples.add(f"raw/{backend.key}", raw_read(bench, backend, steps) * 1000)
            long = resume(bench, "durably", backend, steps)
            short = resume(bench, "durably", backend, 1)
            samples.add(f"durably/{backend.key}", long * 1000)
            samples.add(f"durably-step/{backend.key}", (long - short) / (steps - 1) * 1e6)
            if backend.compare_dbos:

                def take(backend: Backend = backend) -> float:
                    long = resume(bench, "dbos", backend, steps)
                    short = resume(bench, "dbos", backend, 1)
                    samples.add(f"dbos-step/{backend.key}", (long - short) / (steps - 1) * 1e6)
                    return long * 1000

                bench.try_dbos(samples, notes, f"dbos/{backend.key}", take)
    rows = []
    for backend in bench.backends:
        note = notes.get(f"dbos/{backend.key}", "")
        common = {"scenario": TITLE, "backend": backend.label, "dbos_note": note}
        raw = samples.summary(f"raw/{backend.key}")
        rows += [
            Row(
                **common,
                metric=f"resume after step {steps:,} of {steps:,}: open to next live step",
                unit="ms",
                higher_is_better=False,
                durably=samples.summary(f"durably/{backend.key}"),
                reference=raw,
                reference_label=f"{backend.raw_label}: read {steps:,} rows",
                dbos=samples.summary(f"dbos/{backend.key}"),
            ),
            Row(
                **common,
                metric="cost per replayed step ((resume after N - after 1) ÷ (N - 1))",
                unit="µs",
                higher_is_better=False,
                durably=samples.summary(f"durably-step/{backend.key}"),
                reference=None
                if raw is None
                else summarize([value * 1000 / steps for value in raw.samples]),
                reference_label=f"{backend.raw_label}: read time per row",
                dbos=samples.summary(f"dbos-step/{backend.key}"),
            ),
        ]
    return rows

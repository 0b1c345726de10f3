"""The physical limits, on their own: raw committed INSERTs per second, one row per
commit and 100 rows per commit (what group commit could reach), on every backend;
and, on SQLite, durably's own checkpoint statement run by the bare driver (the most
durably's schema allows before any engine code runs).

Each scenario also measures the reference it is compared with, interleaved with its
own repetitions; this table shows them all side by side.
"""

from __future__ import annotations

from bench.suite import Bench, Row, Samples

NAME = "references"
TITLE = "0. References: raw committed INSERTs per second"


def run(bench: Bench) -> list[Row]:
    """Single-row and 100-row commits on every backend."""
    samples = Samples()
    for repetition in range(bench.repeat):
        for backend in bench.backends:
            bench.progress(f"{NAME} {backend.label} repetition {repetition + 1}")
            samples.add(f"1/{backend.key}", bench.raw_commit_rate(backend))
            samples.add(
                f"100/{backend.key}",
                bench.raw_commit_rate(backend, rows_per_commit=100, max_rows=200_000),
            )
            if backend.kind == "sqlite":
                samples.add(f"checkpoint/{backend.key}", bench.checkpoint_commit_rate(backend))
    rows = []
    for backend in bench.backends:
        if backend.kind == "sqlite":
            rows.append(
                Row(
                    scenario=TITLE,
                    metric=(
                        "durably's checkpoint statement by the bare driver (fenced upsert"
                        " in autocommit, durably's schema), 1 per commit"
                    ),
                    unit="checkpoints/s",
                    backend=backend.label,
                    higher_is_better=True,
                    durably=samples.summary(f"checkpoint/{backend.key}"),
                    reference=samples.summary(f"1/{backend.key}"),
                    reference_label=f"{backend.raw_label}, 1 row/commit",
                )
            )
        for per_commit in (1, 100):
            rows.append(
                Row(
                    scenario=TITLE,
                    metric=f"raw rows/s, {per_commit} row(s) per commit",
                    unit="rows/s",
                    backend=backend.label,
                    higher_is_better=True,
                    durably=None,
                    reference=samples.summary(f"{per_commit}/{backend.key}"),
                    reference_label=f"{backend.raw_label}, {per_commit} row(s)/commit",
                )
            )
    return rows

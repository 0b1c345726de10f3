"""The physical limits, on their own: raw committed INSERTs per second, one row per
commit and 100 rows per commit (what group commit could reach), on every backend.

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
    rows = []
    for backend in bench.backends:
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

"""``python -m bench.instructions`` counts what a step costs in CPU instructions, with
valgrind: two runs of a real workload at two sizes, the difference per step."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from bench.instructions import Workload, count_instructions, instructions_per_step

TINY = Workload("tiny", "sequential", "memory", (40, 120))


@pytest.fixture(autouse=True)
def _valgrind() -> None:
    if shutil.which("valgrind") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("valgrind is required under CI=true (.ci/run installs it)")
        pytest.skip("SKIPPING INSTRUCTION COUNTS: valgrind is not installed")


def test_a_step_costs_a_stable_positive_number_of_instructions(tmp_path: Path) -> None:
    """More steps execute more instructions; the per-step difference is the same in
    two measurements (with a fixed hash seed, callgrind counts agree to within 1%) and is
    in the range a Python step can take (more than a thousand, less than ten million)."""
    small = count_instructions(TINY, 40, tmp_path)
    large = count_instructions(TINY, 120, tmp_path)
    assert large > small
    first = (large - small) / 80
    second = instructions_per_step(TINY, tmp_path)
    assert 1_000 < first < 10_000_000
    assert abs(second - first) / first < 0.02


def test_a_failing_run_says_why(tmp_path: Path) -> None:
    """A workload whose child fails is a RuntimeError carrying the child's output."""
    broken = Workload("broken", "concurrent", "no-such-store", (1, 2))
    with pytest.raises(RuntimeError, match=r"broken at size 1 failed[\s\S]*no-such-store"):
        count_instructions(broken, 1, tmp_path)


def test_the_checkpoint_statements_alone_are_counted_per_checkpoint(tmp_path: Path) -> None:
    """The SQL of a concurrent step with no engine (durably's checkpoint statement by
    the bare driver, 10 workflows at a time here): more checkpoints execute more
    instructions, a SQLite statement's worth each."""
    workload = Workload("checkpoints", "checkpoints", "sqlite", (200, 600), concurrency=10)
    small = count_instructions(workload, 200, tmp_path)
    large = count_instructions(workload, 600, tmp_path)
    assert large > small
    assert 1_000 < (large - small) / 400 < 1_000_000


def test_the_writer_alone_is_counted_per_write(tmp_path: Path) -> None:
    """The SQLite writer with no engine (concurrent one-statement writes, 10 at a time
    here): more rounds execute more instructions, a write's worth each."""
    workload = Workload("writer", "writer", "sqlite", (4, 12), concurrency=10)
    small = count_instructions(workload, 4, tmp_path)
    large = count_instructions(workload, 12, tmp_path)
    assert large > small
    assert 1_000 < (large - small) / 80 < 1_000_000

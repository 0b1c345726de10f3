"""Steps per second of a 10-step workflow on SQLite, next to the raw SQLite commit rate.

Both are measured in the same run, on the same file system, with the same WAL and
``synchronous`` settings, and printed as a ratio.

    python bench/steps_vs_raw_sqlite.py [--workflows 300] [--synchronous NORMAL|FULL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from durably import Context, Durably, SqliteStore


def raw_commit_rate(directory: Path, synchronous: str, commits: int) -> float:
    """Single-row committed INSERTs per second with the store's pragmas."""
    path = directory / "raw.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, workflow TEXT, payload TEXT)")
        started = time.perf_counter()
        for index in range(commits):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO t (workflow, payload) VALUES (?, ?)", (f"w-{index}", "42")
            )
            connection.execute("COMMIT")
        return commits / (time.perf_counter() - started)
    finally:
        connection.close()


async def durably_step_rate(directory: Path, synchronous: str, workflows: int) -> float:
    """Steps per second running ``workflows`` 10-step workflows one after another."""
    url = directory / "durably.db"
    app = Durably(SqliteStore(url, synchronous=synchronous))

    async def trivial(value: int) -> int:
        return value + 1

    @app.workflow(name="ten-steps")
    async def ten_steps(ctx: Context) -> int:
        value = 0
        for index in range(10):
            value = await ctx.step(f"step-{index}", trivial, value)
        return value

    async with app:
        await app.run(ten_steps)  # warm up
        started = time.perf_counter()
        for _ in range(workflows):
            await app.run(ten_steps)
        elapsed = time.perf_counter() - started
    return workflows * 10 / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    raw_rates, step_rates = [], []
    for _ in range(arguments.repeat):
        with tempfile.TemporaryDirectory(dir=os.getcwd()) as name:
            directory = Path(name)
            raw_rates.append(
                raw_commit_rate(directory, arguments.synchronous, arguments.workflows * 13)
            )
            step_rates.append(
                asyncio.run(
                    durably_step_rate(directory, arguments.synchronous, arguments.workflows)
                )
            )
    raw, steps = statistics.median(raw_rates), statistics.median(step_rates)
    print(f"synchronous={arguments.synchronous}  (median of {arguments.repeat} runs)")
    raw_range = f"(min {min(raw_rates):,.0f}, max {max(raw_rates):,.0f})"
    step_range = f"(min {min(step_rates):,.0f}, max {max(step_rates):,.0f})"
    print(f"raw SQLite single-row commits/s : {raw:10,.0f}   {raw_range}")
    print(f"durably steps/s (10-step wf)    : {steps:10,.0f}   {step_range}")
    print(f"ratio steps / raw commits       : {steps / raw:10.2%}")


if __name__ == "__main__":
    main()

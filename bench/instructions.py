"""``python -m bench.instructions``: CPU instructions per step, counted by valgrind.

Wall-clock rates on a shared virtual machine move by 2x from one hour to the next (the
raw single-row commit rate of one VM ran anywhere between 17,000 and 35,000 per second
in one day), so a change of a few percent cannot be seen in them. The number of
instructions a step executes can: callgrind counts them, and two counts of the same
code agree to within 0.02% on ``MemoryStore`` and within 1% for sequential steps on
SQLite. That is how every optimisation of the hot path was judged. The count of
``concurrent-sqlite`` moves more: five counts of one commit ranged from 207,900 to
225,500 instructions per step on one day (how many writes share a commit is not the
same from run to run), so count it several times, or count the part you changed
alone (``writer-sqlite`` for the SQLite writer), before reading a change of a few
percent in it.

Each workload runs twice in a fresh interpreter under ``valgrind --tool=callgrind``,
at a small and a large size, on a database in ``/dev/shm`` (no disk noise); the
difference of the two totals divided by the difference of the sizes is the cost of
one more step, with interpreter start-up, imports and warm-up cancelled out::

    python -m bench.instructions                      # every workload below
    python -m bench.instructions --only concurrent-sqlite

Read together, the concurrent workloads split a step of 100 concurrent workflows on
SQLite: ``concurrent-memory`` is the engine, ``checkpoints-sqlite`` the SQL, and
what ``concurrent-sqlite`` costs beyond both is the SQLite store's own Python and
the wait for each batch's commit (the task suspended and woken again).

Instructions are not time: a cache miss or an fsync costs no instruction. Use this
to compare two versions of the code on one machine, and ``python -m bench`` for
rates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.measure import REPOSITORY

_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)

#: The child: runs one scenario's durably workload at one size.
_CHILD = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
workload = json.loads(sys.argv[2])
if workload["scenario"] == "sequential":
    from bench.scenarios.sequential import durably_run
    asyncio.run(durably_run(workload["where"], workload["size"]))
elif workload["scenario"] == "writer":
    from bench.instructions import concurrent_writes
    where = workload["where"]
    asyncio.run(concurrent_writes(
        where["path"], where["synchronous"], workload["size"], workload["concurrency"]))
elif workload["scenario"] == "checkpoints":
    from bench.raw import sqlite_checkpoint_rate
    where = workload["where"]
    sqlite_checkpoint_rate(
        where["path"], where["synchronous"], 3600.0, workload["size"],
        rows_per_commit=workload["concurrency"], steps_per_workflow=workload["steps"])
else:
    from bench.scenarios.concurrent import durably_run
    asyncio.run(durably_run(
        workload["where"], workload["size"], workload["steps"], workload["concurrency"]))
"""


@dataclass(frozen=True)
class Workload:
    """One measured workload: a scenario on a store, at two sizes."""

    name: str
    scenario: str
    store: str
    #: Steps (sequential) or workflows (concurrent) of the small and the large run.
    sizes: tuple[int, int]
    synchronous: str = "NORMAL"
    concurrency: int = 100
    steps: int = 10

    def steps_at(self, size: int) -> int:
        """The steps (checkpoints, for ``checkpoints``; writes, for ``writer``) a run of
        ``size`` takes."""
        if self.scenario == "writer":
            return size * self.concurrency
        return size if self.scenario in ("sequential", "checkpoints") else size * self.steps


WORKLOADS = (
    Workload("sequential-memory", "sequential", "memory", (500, 1500)),
    Workload("sequential-sqlite", "sequential", "sqlite", (500, 1500)),
    Workload("concurrent-memory", "concurrent", "memory", (200, 600)),
    Workload("concurrent-sqlite", "concurrent", "sqlite", (200, 600)),
    # The SQL of concurrent-sqlite's steps with no engine: durably's checkpoint
    # statement by the bare driver, 100 workflows of 10 steps at a time, one checkpoint
    # of each per commit (sizes in checkpoints; the workflow rows it inserts first,
    # one per 10 checkpoints, are counted too, as concurrent-sqlite inserts them).
    Workload("checkpoints-sqlite", "checkpoints", "sqlite", (2000, 6000)),
    # The SQLite writer alone: rounds of 100 concurrent one-statement writes (sizes in
    # rounds), each caller waiting for its batch's commit. No engine and no timers, so
    # two counts agree where concurrent-sqlite's do not: judge the writer's changes here.
    Workload("writer-sqlite", "writer", "sqlite", (20, 60)),
)


async def concurrent_writes(path: str, synchronous: str, rounds: int, writers: int) -> None:
    """``rounds`` times, ``writers`` tasks each submit one single-row INSERT to a
    :class:`~durably.store.sqlite._writer.SqliteWriter` on a durably database and wait
    for its commit (the writer batches them)."""
    import asyncio
    import sqlite3

    from durably.store.sqlite._connect import connect_and_migrate
    from durably.store.sqlite._writer import SqliteWriter

    def connect() -> sqlite3.Connection:
        connection = connect_and_migrate(Path(path), synchronous)
        connection.execute("CREATE TABLE IF NOT EXISTS writes (k INTEGER PRIMARY KEY)")
        return connection

    writer = SqliteWriter(connect, name=path)
    await writer.start()
    try:
        for round_ in range(rounds):
            await asyncio.gather(
                *(
                    writer.submit(
                        lambda c, k=round_ * writers + n: (
                            c.execute("INSERT INTO writes (k) VALUES (?)", (k,)).rowcount
                        ),
                        one_statement=True,
                    )
                    for n in range(writers)
                )
            )
    finally:
        await writer.stop()


def count_instructions(workload: Workload, size: int, directory: Path) -> int:
    """The instructions one run of ``workload`` at ``size`` executes under callgrind.

    Raises:
        RuntimeError: valgrind is missing, or the run failed (its output attached).
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (Debian: apt-get install valgrind)")
    where: dict[str, str] = {"kind": workload.store}
    if workload.store == "sqlite":
        database = Path(tempfile.mkdtemp(dir=directory)) / "bench.db"
        where |= {"path": str(database), "synchronous": workload.synchronous}
    child = {
        "scenario": workload.scenario,
        "where": where,
        "size": size,
        "steps": workload.steps,
        "concurrency": workload.concurrency,
    }
    command = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        _CHILD,
        str(REPOSITORY),
        json.dumps(child),
    ]
    # A fixed hash seed: string hashing, set order and dict probing are then the same
    # in every run, one less source of difference between two counts.
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src"), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False, timeout=1800
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"{workload.name} at size {size} failed (exit {done.returncode}):\n"
            f"{done.stdout}\n{done.stderr[-4000:]}"
        )
    return int(found.group(1))


def instructions_per_step(workload: Workload, directory: Path) -> float:
    """The instructions one more step of ``workload`` costs (see the module)."""
    small, large = workload.sizes
    difference = count_instructions(workload, large, directory) - count_instructions(
        workload, small, directory
    )
    return difference / (workload.steps_at(large) - workload.steps_at(small))


def main(arguments: list[str] | None = None) -> int:
    """Print the instructions per step of each workload."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=[workload.name for workload in WORKLOADS],
        help="measure only this workload (repeatable)",
    )
    options = parser.parse_args(arguments)
    chosen = [w for w in WORKLOADS if options.only is None or w.name in options.only]
    shm = Path("/dev/shm")  # noqa: S108 - tmpfs; a private (0700) directory is made in it
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as directory:
        for workload in chosen:
            per_step = instructions_per_step(workload, Path(directory))
            small, large = workload.sizes
            print(
                f"{workload.name:20} {per_step:>12,.0f} instructions per step "
                f"({workload.store}, {workload.scenario}, sizes {small} and {large})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

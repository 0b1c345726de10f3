"""``python -m bench [--quick] [--only NAME] [--repeat N]``: run the benchmark suite.

Runs every scenario (or those named with ``--only``), prints one table of medians,
min and max over the repetitions, each figure next to its references measured in
the same run, and writes the table as markdown and a PNG (``docs/benchmarks.md`` and
``docs/benchmarks.png`` for a full run of every scenario; ``--quick`` and ``--only``
write only where ``--output`` says, so that a smoke run or a partial run never
replaces the published figures).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import report
from bench.dbos_env import default_venv, ensure_dbos
from bench.measure import REPOSITORY
from bench.scenarios import SCENARIOS
from bench.suite import DEFAULT_POSTGRES_URL, Bench, Row

NOTES = """\
## How to read this page

- **Every figure is measured in the same run as its references**, in fresh child
  processes (a new interpreter for every sample, nothing shared but the OS page
  cache), repetitions interleaved: for each repetition, the raw reference, durably
  and DBOS run one after the other on a new, empty database (a new directory for
  SQLite, a new schema for PostgreSQL). A figure is `median (min-max)` over the
  repetitions.
- **Raw reference** = the bare driver from Python, no framework: `sqlite3` committing
  INSERTs of rows shaped like a step checkpoint (`workflow_id, seq, result`) into a
  WAL file in the same directory with the same `synchronous` setting as durably's
  store, or `psycopg` doing the same over loopback. "1 row per commit" is the most a
  strictly sequential workflow could reach if each step had to be committed before
  the next; "100 rows per commit" is what group commit could reach.
- **durably's checkpoint statement by the bare driver** (SQLite) = the statement
  durably's writer commits for one step (the fenced upsert of the operation, in
  autocommit mode), on durably's own schema and pragmas, run by `sqlite3` with no
  engine: its ratio to the raw rate is the cost of durably's
  schema and fencing; durably's steps/s against it is the engine's share (Python,
  asyncio, encoding). A step cannot be cheaper than this row. In scenario 2 the
  same statement runs for 100 workflows of 10 steps at a time, one checkpoint of
  each per commit, as the writer batches them: the store's SQL for the 100-at-a-time
  workload, with no engine.
- **The engine alone** (scenario 2) = the 100-at-a-time workload on durably's
  `MemoryStore`, which stores nothing: Python and asyncio starting, stepping,
  encoding and waiting for results. No store can take durably above it, so it is
  shown next to the run's fastest raw commit rate: where it is close to that rate,
  a store that beats the raw rate (group commit) has almost nothing to spend. The
  engine and its store's statements run on one thread, one after the other: durably's
  time per step is at least the sum of the two rows' times per step, plus waiting for
  each batch's commit.
- **DBOS** = DBOS Transact (version below) from PyPI, in its own virtualenv, running
  the same workflows (`bench/dbos_driver.py`), configured as its documentation
  shows with its defaults (`log_level` WARNING). On SQLite, DBOS keeps SQLite's
  default rollback journal with `synchronous=FULL` (power-loss safe), so it is
  compared with durably at `synchronous=FULL` (also power-loss safe), never with
  NORMAL. On PostgreSQL both use the same server and durability.
- **durably ÷ ref** divides durably's median by the reference's median (for a time,
  it is how many times the reference's time durably takes). **durably vs DBOS** says
  how many times better durably's median is (rates: durably ÷ DBOS; times and
  memory: DBOS ÷ durably); above 1 means durably is better.
- Where a workload was scaled down for DBOS (its figure is a rate, comparable at any
  size), the row says so; "not measured: …" says why a figure is missing — no figure
  here is estimated or carried over from another run.
- **Noise**: on a virtual machine, fsync latency changes by 2x from one second to the
  next. Read the min-max ranges: where durably's range overlaps its raw reference's
  (the FULL rows especially: one fsync per commit for both), they are equal within
  this machine's noise, whatever the ratio of the medians says.
- **Sizes**: the issue's sizes are the defaults (1,000 steps; 1,000 workflows;
  10,000 interrupted workflows; 100,000 suspended workflows). `--heavy-scale F`
  multiplies the two heaviest (recovery and idle) by F; every row names the size it
  actually ran. DBOS runs fewer workflows where its figure is a rate or a per-workflow
  cost (the row says how many), because at some 70 commits per second on SQLite the
  full sizes would take hours.
- **Latency** (scenario 2) is the time from `start()` to the result in the client,
  in a closed loop: with 100 at a time, p50 includes the wait behind the other 99.
- **Recovery** (scenario 3) is timed from starting the new process (interpreter start
  and imports included, for both systems) until the parent, polling the database,
  counts every workflow complete. The new process uses the killed one's executor id
  (DBOS: its default executor `local`), so no lease has to expire first.
- **Replay** (scenario 4) is timed inside the new process from `open()` / `launch()`
  until the first live step after the recorded ones starts.
- **Idle** (scenario 5): RSS growth per workflow is measured between 10% and 100% of
  the workflows suspended (the marginal cost of one more waiting workflow, without
  imports and caches). durably starts them 500 at a time, each batch once the
  previous one is suspended, and DBOS one at a time, so the figure is what a waiting
  workflow keeps, not the peak of thousands of workflows starting at once. Rows per
  workflow count every row of the system's tables except schema-version and
  live-executor bookkeeping.
- Timings are never asserted in tests; `tests/bench/test_bench_quick.py` only checks
  that the smallest scenario produces a complete row.
"""


def output_directory(given: Path | None, *, quick: bool, only: list[str] | None) -> Path | None:
    """Where the page and the plot go: ``--output`` when given, else ``docs/`` for a full
    run of every scenario, else nowhere (a smoke or partial run never replaces the
    published figures)."""
    if given is not None:
        return given
    return None if quick or only else REPOSITORY / "docs"


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return the exit code (1 when a scenario failed)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition (CI smoke)")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--repeat", type=int, help="repetitions per figure (default 3, quick 1)")
    parser.add_argument(
        "--output",
        type=Path,
        help="directory for benchmarks.md and benchmarks.png "
        "(default: docs/ for a full run of every scenario, nothing for --quick or --only)",
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("DURABLY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--no-dbos", action="store_true", help="skip DBOS (its columns say so)")
    parser.add_argument(
        "--with-dbos",
        action="store_true",
        help="measure DBOS under --quick too (it is skipped there by default: "
        "each DBOS process takes seconds to start)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="do not install DBOS; use it only if its virtualenv exists",
    )
    parser.add_argument("--dbos-venv", type=Path, default=default_venv())
    parser.add_argument(
        "--heavy-scale",
        type=float,
        default=1.0,
        help="multiply the full sizes of the recovery and idle scenarios "
        "(10,000 and 100,000 workflows) by this factor",
    )
    parser.add_argument("--workdir", type=Path, help="where sample databases go (default: /tmp)")
    parser.add_argument("--json", type=Path, help="also write every row and sample as JSON here")
    arguments = parser.parse_args(argv)
    repeat = arguments.repeat or (1 if arguments.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    output = output_directory(arguments.output, quick=arguments.quick, only=arguments.only)
    names = arguments.only or list(SCENARIOS)

    workdir = Path(tempfile.mkdtemp(prefix="durably-bench-", dir=arguments.workdir))
    bench = Bench(
        quick=arguments.quick,
        repeat=repeat,
        workdir=workdir,
        postgres_url=arguments.postgres_url,
        heavy_scale=arguments.heavy_scale,
    )
    if arguments.no_dbos or (arguments.quick and not arguments.with_dbos):
        bench.dbos_reason = "not measured: " + (
            "--no-dbos" if arguments.no_dbos else "--quick skips DBOS unless --with-dbos"
        )
    else:
        bench.progress(f"preparing DBOS in {arguments.dbos_venv}")
        bench.dbos_python, bench.dbos_reason = ensure_dbos(
            arguments.dbos_venv, install=not arguments.no_install
        )
    bench.progress(bench.dbos_reason)

    started = time.time()
    rows: list[Row] = []
    failures: list[str] = []
    try:
        for name in names:
            module = importlib.import_module(f"bench.scenarios.{name}")
            bench.progress(f"scenario {module.TITLE}")
            try:
                rows.extend(module.run(bench))
            except Exception as error:  # one failing scenario must not hide the others
                traceback.print_exc()
                failures.append(f"{name}: {error}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.time() - started

    print(report.text_table(rows))
    command = "python -m bench" + (
        ""
        if argv is None and len(sys.argv) <= 1
        else " " + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    if failures:
        print("\nFAILED scenarios:\n  " + "\n  ".join(failures))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        kind = "quick" if arguments.quick else "full"
        title = f"durably benchmarks ({kind} run, {repeat} repetition(s))"
        problem = report.plot(rows, output / "benchmarks.png", title)
        preamble = _preamble(bench, command, elapsed, repeat, failures)
        (output / "benchmarks.md").write_text(
            report.markdown(
                rows, preamble=preamble, notes=NOTES, image=None if problem else "benchmarks.png"
            ),
            encoding="utf-8",
        )
        print(
            f"\nwrote {output / 'benchmarks.md'}"
            + (f" (no PNG: {problem})" if problem else f" and {output / 'benchmarks.png'}")
        )
    if arguments.json is not None:
        arguments.json.write_text(json.dumps([row.to_json() for row in rows], indent=1))
    return 1 if failures else 0


def _preamble(bench: Bench, command: str, elapsed: float, repeat: int, failures: list[str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/` (do not edit by hand: run the command below again).",
        "",
        f"- **Command**: `{command}` (from the repository root, in durably's virtualenv "
        f"with `pip install -e '.[bench]'`)",
        f"- **Run**: {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed / 60:.1f} minutes, "
        f"{repeat} repetition(s) per figure{', quick sizes' if bench.quick else ''}",
        f"- **Machine**: {_machine()}",
        f"- **Software**: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{_postgres_version(bench.postgres_url)}, durably {_durably_version()}",
        f"- **DBOS**: {bench.dbos_reason}",
    ]
    if failures:
        lines.append(f"- **Failed scenarios**: {'; '.join(failures)}")
    return "\n".join(lines) + "\n"


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{memory_kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration):
        memory = "unknown RAM"
    filesystem = subprocess.run(
        ["stat", "-f", "-c", "%T", tempfile.gettempdir()],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {memory}, Linux {platform.release()}, "
        f"sample databases on {filesystem or 'unknown'} ({tempfile.gettempdir()}); "
        f"PostgreSQL on the same machine over loopback"
    )


def _postgres_version(url: str) -> str:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as connection:
            row = connection.execute("SELECT version()").fetchone()
            settings = connection.execute(
                "SELECT current_setting('synchronous_commit'), current_setting('fsync')"
            ).fetchone()
        assert row is not None and settings is not None
        return (
            f"{str(row[0]).split(' on ')[0]} (synchronous_commit={settings[0]}, "
            f"fsync={settings[1]})"
        )
    except Exception as error:
        return f"PostgreSQL unavailable ({error})"


def _durably_version() -> str:
    import durably

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{durably.__version__} (commit {commit or 'unknown'}{', src/ modified' if dirty else ''})"
    )


if __name__ == "__main__":
    sys.exit(main())

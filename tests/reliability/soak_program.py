"""Soak: many workflows with durable sleeps and signals through one process on SQLite,
watching the process's memory (RSS) and open file descriptors.

Usage::

    python soak_program.py --workflows 20000 [--wave 1000] [--database PATH]

Workflows run in waves of ``--wave``: each workflow records a step, sleeps durably
for a moment (it suspends: it holds no memory while it sleeps), waits for a signal
(it suspends again, unless the signal is already there), then records a last step.
The program starts a wave and sends the even-numbered workflows their signal (with a
dedup key) at once, while the wave runs: each arrives before, while or after its
workflow suspends on it, and the short sleep is often due by the time its workflow
has suspended, so wake-ups race suspensions again and again (the summary's
``claimed_while_run_ending`` counts the claims that came before the end of the run
that suspended: 51 and 137 in two runs of 20,000). It then waits until every
odd-numbered workflow is suspended on its signal, sends theirs (a signal that wakes a
workflow at rest), and waits for the results. After each wave it prints one JSON line
(workflows done, RSS in MiB, open file descriptors, seconds, and with
``--tracemalloc`` the Python heap); at the end a summary line, then exits 0 only if
every workflow completed with the right result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

from durably import Context, Durably, SqliteStore, WorkflowStatus
from durably.models import WorkflowRecord

SIGNAL_WAIT = "waiting for signal 'go'"
#: Short: the sleep is often due as its workflow suspends, and its claim then races
#: the end of the run that suspended it (the summary counts the claims that came
#: before that end: such a claim runs the workflow once the ending run is gone).
NAP = timedelta(milliseconds=1)
#: A wave that makes no progress for this long is reported as stuck (a workflow left
#: unrun is reported, not waited for forever).
STUCK_SECONDS = 60.0


def rss_mib() -> float:
    """This process's resident set size, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


class RaceCountingStore(SqliteStore):
    """A SQLite store that counts the workflows it claimed for ``app`` while their
    previous run in ``app`` had not ended yet (it has suspended, and is returning)."""

    app: Durably | None = None
    claimed_while_run_ending = 0

    async def claim_due_workflows(self, **options: Any) -> list[WorkflowRecord]:
        claimed = await super().claim_due_workflows(**options)
        if self.app is not None:
            running = self.app._runs
            self.claimed_while_run_ending += sum(
                record.workflow_id in running for record in claimed
            )
        return claimed


def build(database: Path) -> Durably:
    store = RaceCountingStore(database)
    app = Durably(
        store,
        inline_wait=0,  # every wait unwinds the workflow: nothing stays in memory
        poll_interval=timedelta(milliseconds=50),
        max_concurrent_workflows=5000,
    )

    async def prepare(n: int) -> int:
        return n * 2

    async def finish(value: int, note: str) -> str:
        return f"{value}:{note}"

    @app.workflow(name="soak")
    async def soak(ctx: Context, n: int) -> str:
        value = await ctx.step("prepare", prepare, n)
        await ctx.sleep("nap", NAP)
        note = await ctx.wait_signal("go", timeout=timedelta(minutes=10), payload_type=str)
        return await ctx.step("finish", finish, value, str(note))

    store.app = app
    return app


async def wait_until_waiting_for_signal(app: Durably, ids: list[str], wave: int) -> None:
    """Poll the store until every workflow of ``ids`` (of a wave of ``wave``, the only
    ones that can be suspended) is suspended on its signal."""
    pending = set(ids)
    since = time.monotonic()
    while pending:
        infos = await app.list_workflows(status=WorkflowStatus.SUSPENDED, limit=wave)
        pending -= {info.workflow_id for info in infos if info.wait_reason == SIGNAL_WAIT}
        if pending and time.monotonic() - since > STUCK_SECONDS:
            await report_stuck(app, sorted(pending))
        if pending:
            await asyncio.sleep(0.05)


async def report_stuck(app: Durably, ids: list[str]) -> None:
    """Exit with a description of the workflows that stopped progressing."""
    described = []
    for workflow_id in ids[:20]:
        info = await app.get_workflow(workflow_id)
        stranded = info.owner == app.executor_id and workflow_id not in app._runs
        described.append(
            f"{workflow_id}: {info.status}, owner {info.owner}"
            + (" (this process, which does not run it: stranded)" if stranded else "")
        )
    raise SystemExit(f"{len(ids)} workflow(s) stopped progressing:\n" + "\n".join(described))


async def run(workflows: int, wave: int, database: Path) -> dict[str, object]:
    app = build(database)
    store = app.store
    assert isinstance(store, RaceCountingStore)
    fds_before_open = open_fds()
    started = time.monotonic()
    curve: list[dict[str, object]] = []
    wrong: list[str] = []
    async with app:
        fds_open = open_fds()
        rss_open = rss_mib()
        done = 0
        while done < workflows:
            ids = [f"soak-{n}" for n in range(done, min(done + wave, workflows))]
            handles = [await app.start("soak", n, workflow_id=i) for n, i in enumerate(ids, done)]
            racing = [f"soak-{n}" for n in range(done, done + len(ids)) if n % 2 == 0]
            at_rest = [f"soak-{n}" for n in range(done, done + len(ids)) if n % 2 == 1]
            for workflow_id in racing:
                await app.send_signal(workflow_id, "go", f"go-{workflow_id}", dedup_key=workflow_id)
            await wait_until_waiting_for_signal(app, at_rest, len(ids))
            for workflow_id in at_rest:
                await app.send_signal(workflow_id, "go", f"go-{workflow_id}", dedup_key=workflow_id)
            for n, handle in enumerate(handles, done):
                try:
                    result = await handle.result(timeout=STUCK_SECONDS)
                except TimeoutError:
                    await report_stuck(app, [handle.workflow_id])
                if result != f"{n * 2}:go-soak-{n}":
                    wrong.append(f"{handle.workflow_id}: {result}")
            done += len(ids)
            point: dict[str, object] = {
                "done": done,
                "rss_mib": round(rss_mib(), 1),
                "fds": open_fds(),
                "seconds": round(time.monotonic() - started, 1),
            }
            if tracemalloc.is_tracing():
                point["python_heap_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
            curve.append(point)
            print(json.dumps(point), flush=True)
        counts = await app.store.count_workflows()
        fds_end_open = open_fds()
    return {
        "workflows": workflows,
        "completed": counts.get(WorkflowStatus.COMPLETED, 0),
        "claimed_while_run_ending": store.claimed_while_run_ending,
        "wrong_results": wrong[:20],
        "rss_mib_after_open": round(rss_open, 1),
        "rss_mib_end": curve[-1]["rss_mib"],
        "rss_mib_peak": max(float(point["rss_mib"]) for point in curve),  # type: ignore[arg-type]
        "fds_before_open": fds_before_open,
        "fds_after_open": fds_open,
        "fds_before_close": fds_end_open,
        "fds_after_close": open_fds(),
        "seconds": round(time.monotonic() - started, 1),
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=20_000)
    parser.add_argument("--wave", type=int, default=1_000)
    parser.add_argument("--database", type=Path)
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also report the Python heap (slower): tells a leak of Python objects "
        "from SQLite's page cache filling up",
    )
    arguments = parser.parse_args()
    if arguments.tracemalloc:
        tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="durably-soak-") as directory:
        database = arguments.database or Path(directory) / "soak.db"
        summary = asyncio.run(run(arguments.workflows, arguments.wave, database))
    print(json.dumps({"summary": summary}), flush=True)
    ok = summary["completed"] == arguments.workflows and not summary["wrong_results"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""The SIGKILL sweep: every write boundary and every step body of
``all_features_program.py``, on SQLite or PostgreSQL, each crash followed by recovery
in a new process, and every recovery checked.

Each crash point runs in real processes: the driver (a fresh interpreter that has
imported durably but never opened a store or an event loop) forks a child that runs
the workflows until it kills itself with SIGKILL; then a client child sends the
approval signal while no worker runs; then a worker child recovers everything. Forking
saves the interpreter start-up (about a second on a loaded 2-core machine) at each of
the hundreds of processes. The stores, snapshots and checks are in ``sweep_checks.py``.

Modes: ``before`` / ``after`` (SIGKILL before or after the N-th progress write commits,
for every N), ``inside`` (SIGKILL inside every step and compensation body, and inside
chosen retry attempts), ``repeat`` (one workflow run spread over many processes: each
is killed right after its first write that changed the database, the next one
recovers, until the workflows finish). ``--without-children``: ``payment`` starts no
child workflows (fewer writes to sweep).

Every recovery is checked against the crash point's state and against the crash-free
run: nothing recorded is lost or changed, no recorded body runs again, every workflow
(each child too) exists once under the same id and ends with the same status and
result, and every history has the same operations.

Usage::

    python sweep_driver.py --store sqlite --mode before --work DIR
    python sweep_driver.py --store postgres --mode after --work DIR --url URL --schema P

Prints one JSON line: the crash points tried, the recoveries, the checks made and the
violations found (an empty list when every check held).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import all_features_program as program
from sweep_checks import (
    TABLES,
    State,
    Stores,
    Tally,
    Target,
    check_children,
    check_final_state,
    check_nothing_lost,
    check_nothing_repeated,
    check_same_as_crash_free,
    progress,
    side_effects,
    snapshot,
    started_children,
)

#: A child that runs longer than this is hung: SIGALRM kills it and the driver says so.
CHILD_TIMEOUT_SECONDS = 60
#: Tries of a run stopped by the orphaned-run defect before giving up on a point.
ATTEMPTS = 3
#: Write boundaries tried past the crash-free run's last one: a run may make a write
#: more than another (on PostgreSQL, a parent may or may not suspend once more while
#: its children run), and the sweep must reach the end of every run.
EXTRA_POINTS = 3


# -- processes --------------------------------------------------------------------------


@dataclass
class ChildResult:
    """How a forked child ended and what it returned."""

    pid: int
    killed_by: int | None
    exit_code: int | None
    value: Any = None


#: The exit code of a child that hung (after printing where it was stuck).
HUNG = 99


def report_hang(signum: int, frame: object) -> None:
    """SIGALRM in a child: print every asyncio task's stack, then exit with HUNG."""
    print(f"process {os.getpid()} hung; its tasks:", file=sys.stderr)
    loop = asyncio._get_running_loop()
    if loop is not None:
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=sys.stderr)
    sys.stderr.flush()
    os._exit(HUNG)


def fork_run(work: Callable[[], Coroutine[Any, Any, Any]]) -> ChildResult:
    """Run ``work()`` in a forked child process and wait for it to end."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        signal.signal(signal.SIGALRM, report_hang)
        signal.alarm(CHILD_TIMEOUT_SECONDS)
        code = 0
        try:
            value = asyncio.run(work())
            with os.fdopen(write_end, "w") as pipe:
                json.dump(value, pipe)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    return ChildResult(
        pid=pid,
        killed_by=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        value=json.loads(data) if data else None,
    )


# -- the sweep --------------------------------------------------------------------------


class Sweep:
    """Runs crash points against fresh stores and checks every recovery."""

    def __init__(self, stores: Stores, *, children: bool) -> None:
        self.stores = stores
        self.children = children
        #: Every step and compensation body of the workflows swept.
        self.bodies = program.BODIES + (program.CHILD_BODIES if children else ())
        self.tally = Tally()
        self.baseline: dict[str, Any] | None = None
        #: What the crash-free run recorded.
        self.expected: State = {table: {} for table in TABLES}
        self.boundaries = 0

    def worker(self, target: Target, crash: str | None, **options: Any) -> ChildResult:
        self.tally.processes += 1
        return fork_run(
            lambda: program.run_worker(
                target.spec, target.log, crash, children=self.children, **options
            )
        )

    def client(self, target: Target) -> ChildResult:
        self.tally.processes += 1
        return fork_run(lambda: program.run_client(target.spec, target.log))

    def is_orphaned(self, result: ChildResult) -> bool:
        """Whether the run stopped on the known engine defect (see
        ``all_features_program.find_orphan``); counted, never hidden."""
        orphaned = result.exit_code == 0 and bool(result.value) and "orphaned" in result.value
        self.tally.orphaned_runs += orphaned
        return orphaned

    def run_baseline(self) -> None:
        for attempt in range(ATTEMPTS):
            target = self.stores.fresh(0, f"baseline-{attempt}")
            try:
                result = self.worker(target, None)
                final = snapshot(target)
            finally:
                self.stores.drop(target)
            if self.is_orphaned(result):
                continue
            if result.exit_code != 0 or result.value is None:
                raise SystemExit(f"the crash-free run failed: {result}")
            self.baseline = result.value["outcome"]
            self.expected = final
            self.boundaries = int(result.value["boundaries"])
            # The reference must be what the program says it is (not counted as checks).
            reference = Tally()
            children = sorted(started_children(final))
            wanted = sorted(program.CHILD_IDS if self.children else ())
            reference.check(children == wanted, f"children {children} instead of {wanted}")
            check_final_state(reference, "crash-free run", final, self.bodies)
            check_children(reference, "crash-free run", final)
            if reference.violations:
                raise SystemExit(f"the crash-free run is not the reference: {reference.violations}")
            return
        raise SystemExit("every crash-free run was stopped by the orphaned-run defect")

    def recover(self, target: Target) -> ChildResult:
        """A worker that runs everything to the end (again, if the orphaned-run defect
        stops one before the end)."""
        for _ in range(ATTEMPTS):
            recovered = self.worker(target, None)
            if not self.is_orphaned(recovered):
                break
        return recovered

    def crash_and_recover(self, index: int, crash: str) -> bool:
        """One crash point; False when the run ended before reaching it."""
        for attempt in range(ATTEMPTS):
            target = self.stores.fresh(index, f"{crash}-{attempt}")
            try:
                crashed = self.worker(target, crash)
                if self.is_orphaned(crashed):
                    continue  # stopped before the crash point: try the point again
                if crashed.exit_code == 0:
                    return False
                self.tally.crash_points += 1
                self.tally.check(
                    crashed.killed_by == signal.SIGKILL,
                    f"{crash}: the crash run ended with {crashed} instead of SIGKILL",
                )
                before = snapshot(target)
                self.client(target)  # a signal sent while no worker runs
                recovered = self.recover(target)
                self.tally.recoveries += 1
                self.check_recovered(crash, target, before, recovered, {crashed.pid})
                return True
            finally:
                self.stores.drop(target)
        self.tally.check(False, f"{crash}: every attempt was stopped by the orphaned-run defect")
        return True

    def check_recovered(
        self,
        point: str,
        target: Target,
        before: State,
        recovered: ChildResult,
        crashed_pids: set[int],
    ) -> None:
        self.tally.check(recovered.exit_code == 0, f"{point}: the recovery run failed: {recovered}")
        outcome = None if recovered.value is None else recovered.value["outcome"]
        self.tally.check(
            outcome == self.baseline,
            f"{point}: outcome {outcome} differs from the crash-free {self.baseline}",
        )
        after = snapshot(target)
        check_nothing_lost(self.tally, point, before, after)
        check_nothing_repeated(self.tally, point, before, side_effects(target), crashed_pids)
        check_final_state(self.tally, point, after, self.bodies)
        check_children(self.tally, point, after)
        check_same_as_crash_free(self.tally, point, after, self.expected)

    def sweep(self, crashes: list[str], concurrency: int) -> int:
        """Try every crash point, ``concurrency`` at a time (each in its own process
        tree); return how many points were never reached (the run ended first)."""
        results = self.stores.work / "results"
        results.mkdir(parents=True, exist_ok=True)
        running: dict[int, Path] = {}
        unreached = 0

        def reap() -> None:
            nonlocal unreached
            pid, status = os.wait()
            result = running.pop(pid)
            if not result.exists():
                self.tally.violations.append(f"a point runner died: status {status}")
                return
            data = json.loads(result.read_text())
            unreached += 0 if data["reached"] else 1
            for name in ("crash_points", "recoveries", "orphaned_runs", "processes", "checks"):
                setattr(self.tally, name, getattr(self.tally, name) + data[name])
            self.tally.violations.extend(data["violations"])

        for index, crash in enumerate(crashes, start=1):
            while len(running) >= concurrency:
                reap()
            result = results / f"{index}.json"
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # a point runner: one crash, one recovery, the checks
                signal.alarm(CHILD_TIMEOUT_SECONDS * 4)
                code = 0
                try:
                    self.tally = Tally()
                    reached = self.crash_and_recover(index, crash)
                    result.write_text(json.dumps({"reached": reached, **asdict(self.tally)}))
                except BaseException:
                    traceback.print_exc()
                    sys.stderr.flush()
                    code = 1
                os._exit(code)
            running[pid] = result
        while running:
            reap()
        return unreached

    def repeat(self) -> None:
        """Kill every process right after its first write that changed the database."""
        target = self.stores.fresh(1, "repeat")
        try:
            crashed_pids: set[int] = set()
            previous = snapshot(target)
            count = 1
            for _ in range(500):
                run = self.worker(
                    target,
                    f"after:{count}",
                    max_recovery_attempts=1000,
                    crash_methods=program.RUN_WRITES,
                )
                if self.is_orphaned(run):
                    continue
                if run.exit_code == 0:
                    break
                self.tally.check(run.killed_by == signal.SIGKILL, f"repeat: a run ended with {run}")
                crashed_pids.add(run.pid)
                self.tally.crash_points += 1
                current = snapshot(target)
                point = f"repeat run {len(crashed_pids)} (after:{count})"
                check_nothing_lost(self.tally, point, previous, current)
                check_nothing_repeated(
                    self.tally, point, previous, side_effects(target), crashed_pids - {run.pid}
                )
                count = 1 if progress(current) != progress(previous) else count + 1
                previous = current
                self.client(target)
            else:
                self.tally.check(False, "repeat: the workflows never finished")
            self.tally.recoveries += 1
            self.check_recovered("repeat", target, previous, run, crashed_pids)
        finally:
            self.stores.drop(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--mode", choices=["before", "after", "inside", "repeat"], required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--url")
    parser.add_argument("--schema")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument(
        "--without-children", action="store_true", help="payment starts no child workflows"
    )
    arguments = parser.parse_args()
    sweep = Sweep(
        Stores(arguments.store, arguments.work, arguments.url, arguments.schema),
        children=not arguments.without_children,
    )
    sweep.run_baseline()
    unreached = 0
    if arguments.mode in ("before", "after"):
        last = sweep.boundaries + EXTRA_POINTS
        crashes = [f"{arguments.mode}:{n}" for n in range(1, last + 1)]
        unreached = sweep.sweep(crashes, arguments.concurrency)
    elif arguments.mode == "inside":
        crashes = [f"inside:{name}" for _, name in sweep.bodies]
        crashes += [f"inside:{name}@{attempt}" for name, attempt in program.ATTEMPT_BODIES]
        unreached = sweep.sweep(crashes, arguments.concurrency)
    else:
        sweep.repeat()
    tally = sweep.tally
    print(
        json.dumps(
            {
                "store": arguments.store,
                "mode": arguments.mode,
                "children": sweep.children,
                "boundaries": sweep.boundaries,
                "crash_points": tally.crash_points,
                "unreached_points": unreached,
                "recoveries": tally.recoveries,
                "orphaned_runs": tally.orphaned_runs,
                "processes": tally.processes,
                "checks": tally.checks,
                "violations": tally.violations,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

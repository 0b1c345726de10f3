"""``durably worker`` processes on PostgreSQL, through the console script: a SIGTERM in
the middle of a run finishes or releases what the worker holds, and a schedule shared
by two workers fires once per tick."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from psycopg import sql
from tests.conftest import postgres_url

from durably import WorkflowStatus

PROGRAM = Path(__file__).with_name("worker_app_program.py")
#: The console script installed next to this interpreter (``pip install -e .``).
DURABLY = Path(sys.executable).with_name("durably")
#: Far longer than the test: a workflow taken over before it ends was released.
LONG_LEASE_SECONDS = 600
GRACE_SECONDS = 3.0
#: Workflows per group: those whose gate opens during the grace period, and the others.
GROUP_SIZE = 10
COMPLETED = WorkflowStatus.COMPLETED.value
PENDING = WorkflowStatus.PENDING.value


def program() -> ModuleType:
    """The worker app's module, for the client app the test builds from it."""
    spec = importlib.util.spec_from_file_location("worker_app_program", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_until(
    condition: Callable[[], bool], what: str, explain: Callable[[], str], timeout: float = 60.0
) -> None:
    """Poll ``condition`` until it holds; on timeout fail with ``explain()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}\n{explain()}")
        time.sleep(0.05)


class Worker:
    """One ``durably worker worker_app_program:app`` process, logging to a file."""

    def __init__(self, name: str, log: Path, environment: dict[str, str], grace: float) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [str(DURABLY), "worker", "worker_app_program:app", "--grace", str(grace)],
                cwd=PROGRAM.parent,  # the worker imports modules of its current directory
                env={**environment, "DURABLY_WORKER_TEST_EXECUTOR": name},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text()

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def assert_alive(self) -> None:
        assert self.is_alive(), f"worker {self.name} exited:\n{self.output()[-4000:]}"

    def wait_started(self) -> None:
        def started() -> bool:
            self.assert_alive()
            return f"worker {self.name} started" in self.output()

        wait_until(started, f"worker {self.name} started", self.output)

    def terminate(self) -> None:
        """Send SIGTERM (see :meth:`wait_stopped`)."""
        self.terminated_at = time.monotonic()
        self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> float:
        """Wait for the exit after SIGTERM; check it is clean (status 0, "stopped"
        logged); return the seconds it took."""
        try:
            status = self.process.wait(timeout=GRACE_SECONDS + 30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.output()[-4000:]}") from None
        took = time.monotonic() - self.terminated_at
        assert status == 0, f"{self.name} exited with {status}:\n{self.output()[-4000:]}"
        assert f"worker {self.name} stopped" in self.output(), self.output()[-4000:]
        return took

    def kill(self) -> None:
        if self.is_alive():
            self.process.kill()
            self.process.wait()


class Database:
    """Queries on the test's schema, from outside the workers."""

    def __init__(self, schema: str) -> None:
        self.connection = psycopg.connect(postgres_url(), autocommit=True)
        name = sql.Identifier(schema)
        self.connection.execute(sql.SQL("CREATE SCHEMA {}").format(name))
        self.connection.execute(sql.SQL("SET search_path TO {}").format(name))
        # The workers' steps write here; the store's own tables join it when the first
        # process opens the store.
        self.connection.execute(
            "CREATE TABLE step_effects (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " step TEXT NOT NULL, pid INTEGER NOT NULL)"
        )

    def rows(self, query: str, *params: object) -> list[tuple[object, ...]]:
        return self.connection.execute(query, params or None).fetchall()  # type: ignore[arg-type]

    def value(self, query: str, *params: object) -> object:
        return self.rows(query, *params)[0][0]

    def explain(self, workers: list[Worker]) -> str:
        """The workflows by owner and status, the effects, and each worker's log tail."""
        lines = ["owner, status, count:"]
        lines += [
            f"  {row}"
            for row in self.rows(
                "SELECT owner, status, count(*) FROM workflows GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ]
        lines += ["step, pid, count:"]
        lines += [
            f"  {row}"
            for row in self.rows(
                "SELECT step, pid, count(*) FROM step_effects GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ]
        for worker in workers:
            lines += [f"--- {worker.name} (tail) ---", worker.output()[-3000:]]
        return "\n".join(lines)

    def assert_one_effect_per_recorded_step(self) -> None:
        """Every recorded step result has exactly one side-effect row, from the
        process whose pid the result holds; no effect lacks a recorded result."""
        recorded = {
            (workflow_id, seq): (name, json.loads(str(result)))
            for workflow_id, seq, name, result in self.rows(
                "SELECT workflow_id, seq, name, result FROM operations"
            )
        }
        effects = self.rows("SELECT workflow_id, seq, step, pid FROM step_effects")
        ran = [(workflow_id, seq) for workflow_id, seq, _, _ in effects]
        assert len(ran) == len(set(ran)), "a step body ran twice"
        assert {(workflow_id, seq): (step, pid) for workflow_id, seq, step, pid in effects} == (
            recorded
        )


@pytest.fixture
def database(postgres_schema: str) -> Iterator[Database]:
    database = Database(postgres_schema)
    yield database
    database.connection.close()


@pytest.fixture
def start_worker(postgres_schema: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts workers (``name``, ``grace``, extra variables); kills those left running."""
    assert DURABLY.exists(), f"no console script at {DURABLY}: pip install -e '.[test]'"
    started: list[Worker] = []
    base = {
        **os.environ,
        "DURABLY_WORKER_TEST_URL": postgres_url(),
        "DURABLY_WORKER_TEST_SCHEMA": postgres_schema,
        "DURABLY_WORKER_TEST_GATES": str(tmp_path),
    }

    def start(name: str, grace: float = GRACE_SECONDS, **variables: str) -> Worker:
        worker = Worker(name, tmp_path / f"{name}.log", {**base, **variables}, grace)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def test_sigterm_finishes_or_releases_what_the_worker_holds(
    postgres_schema: str, database: Database, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    """A worker holding 20 running workflows under a 10-minute lease gets SIGTERM: the
    ten whose gate opens during --grace finish there, the ten still blocked are released
    (no owner, no lease); it exits 0 at the end of the grace period; a second worker
    finishes them at once; every step body ran exactly once per recorded result."""
    client = program().make_app(postgres_url(), postgres_schema, worker=False)

    async def start_all() -> None:
        async with client:
            for gate in ("finish", "release"):
                for n in range(GROUP_SIZE):
                    await client.start("gated", gate, workflow_id=f"{gate}-{n:02}")

    asyncio.run(start_all())
    first = start_worker("first", DURABLY_WORKER_TEST_LEASE_SECONDS=str(LONG_LEASE_SECONDS))

    def first_holds_every_workflow() -> bool:
        first.assert_alive()
        held = database.value(
            "SELECT count(*) FROM workflows WHERE owner = 'first' AND status = 'RUNNING'"
        )
        before = database.value("SELECT count(*) FROM step_effects WHERE step = 'before'")
        return held == before == 2 * GROUP_SIZE

    wait_until(
        first_holds_every_workflow,
        "the first worker runs every workflow, blocked at its gate",
        lambda: database.explain([first]),
    )
    first_pid = first.process.pid
    first.terminate()
    # Once it waits out its grace period, the "finish" workflows may go on.
    wait_until(
        lambda: "waiting up to" in first.output(),
        "the first worker gives its running workflows their grace period",
        lambda: database.explain([first]),
    )
    (tmp_path / "finish").touch()
    stop_seconds = first.wait_stopped()
    stopped = time.monotonic()
    log = first.output()
    assert GRACE_SECONDS <= stop_seconds < GRACE_SECONDS + 10, (stop_seconds, log)
    assert "stop requested: finishing or releasing what this worker holds" in log, log
    assert f"waiting up to {GRACE_SECONDS:.1f}s for {2 * GROUP_SIZE} running workflow(s)" in log
    abandoned = set(re.findall(r"workflow (\S+) abandoned: the app is closing", log))
    assert abandoned == {f"release-{n:02}" for n in range(GROUP_SIZE)}, log

    # What it held is finished or released: no owner, no lease left to time out.
    finished = dict(
        database.rows("SELECT workflow_id, status FROM workflows WHERE workflow_id LIKE 'finish-%'")
    )
    assert set(finished.values()) == {COMPLETED}, database.explain([first])
    held = database.rows(
        "SELECT workflow_id, status, owner, lease_until FROM workflows"
        " WHERE owner IS NOT NULL OR lease_until IS NOT NULL"
    )
    assert held == [], database.explain([first])
    assert database.rows("SELECT * FROM executors") == []
    assert database.value("SELECT count(*) FROM step_effects WHERE step = 'through_gate'") == (
        GROUP_SIZE
    ), "only the 'finish' workflows went through their gate"

    second = start_worker("second", DURABLY_WORKER_TEST_LEASE_SECONDS=str(LONG_LEASE_SECONDS))

    def second_holds_the_released() -> bool:
        second.assert_alive()
        return database.value("SELECT count(*) FROM workflows WHERE owner = 'second'") == GROUP_SIZE

    wait_until(
        second_holds_the_released,
        "the second worker claims the released workflows",
        lambda: database.explain([first, second]),
    )
    (tmp_path / "release").touch()
    wait_until(
        lambda: (
            database.value("SELECT count(*) FROM workflows WHERE status = 'COMPLETED'")
            == 2 * GROUP_SIZE
        ),
        "the second worker completes them",
        lambda: database.explain([first, second]),
    )
    taken_over_after = time.monotonic() - stopped
    assert taken_over_after < LONG_LEASE_SECONDS / 10
    second_pid = second.process.pid
    second.terminate()
    assert second.wait_stopped() < GRACE_SECONDS, "nothing ran: no grace period to wait out"
    # The second worker did not need to find the first one dead to claim its work.
    assert "is dead" not in second.output(), second.output()

    results = {
        workflow_id: json.loads(str(result))
        for workflow_id, result in database.rows("SELECT workflow_id, result FROM workflows")
    }
    assert results == {
        **{f"finish-{n:02}": [first_pid] * 3 for n in range(GROUP_SIZE)},
        **{f"release-{n:02}": [first_pid, second_pid, second_pid] for n in range(GROUP_SIZE)},
    }
    database.assert_one_effect_per_recorded_step()
    assert database.value("SELECT count(*) FROM step_effects") == 2 * GROUP_SIZE * 3


def test_a_schedule_fires_once_per_tick_across_two_worker_processes(
    database: Database, start_worker: Callable[..., Worker]
) -> None:
    """Two workers run an every-second schedule (six-field cron) on one schema: each
    tick from the first to the last has one workflow, run once; both stay up until
    SIGTERM and exit 0."""
    workers = [
        start_worker(name, DURABLY_WORKER_TEST_CRON="* * * * * *") for name in ("alpha", "bravo")
    ]
    for worker in workers:
        worker.wait_started()
    both_up = datetime.now(UTC)

    def completed_ticks() -> list[datetime]:
        for worker in workers:
            worker.assert_alive()
        rows = database.rows("SELECT workflow_id FROM workflows WHERE status = 'COMPLETED'")
        return [tick_of(str(workflow_id)) for (workflow_id,) in rows]

    wait_until(
        lambda: sum(tick > both_up for tick in completed_ticks()) >= 5,
        "five ticks ran while both workers were up",
        lambda: database.explain(workers),
    )
    last_completed = max(completed_ticks())  # checks once more that both are alive
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait_stopped()

    rows = database.rows("SELECT workflow_id, workflow_name, status FROM workflows")
    assert {name for _, name, _ in rows} == {"heartbeat"}
    statuses = {tick_of(str(workflow_id)): status for workflow_id, _, status in rows}
    ticks = sorted(statuses)
    assert len(ticks) == len(rows), "two workflows for one tick"
    assert ticks == [ticks[0] + timedelta(seconds=n) for n in range(len(ticks))], (
        "a tick between the first and the last has no workflow"
    )
    # A tick fired while the workers were stopping may be left for the next worker.
    assert {statuses[tick] for tick in ticks if tick <= last_completed} == {COMPLETED}, statuses
    assert {statuses[tick] for tick in ticks if tick > last_completed} <= {COMPLETED, PENDING}
    database.assert_one_effect_per_recorded_step()
    completed = [tick for tick in ticks if statuses[tick] == COMPLETED]
    assert database.value("SELECT count(*) FROM step_effects") == len(completed)


def tick_of(workflow_id: str) -> datetime:
    """The tick of a ``sched:heartbeat:...`` workflow id."""
    prefix = "sched:heartbeat:"
    assert workflow_id.startswith(prefix), workflow_id
    return datetime.strptime(workflow_id.removeprefix(prefix), "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )

"""Three worker processes share 300 workflows on PostgreSQL while one is killed with
SIGKILL and another is stopped past its lease (a zombie) and then resumed."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from psycopg import sql
from tests.conftest import postgres_url

from durably import WorkflowStatus

PROGRAM = Path(__file__).with_name("pg_worker_program.py")
WORKFLOWS = 300
pytestmark = pytest.mark.crash


def program() -> ModuleType:
    """The worker program as a module (the client builds the same app)."""
    spec = importlib.util.spec_from_file_location("pg_worker_program", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 90.0,
    explain: Callable[[], str] = str,
) -> None:
    """Poll ``condition`` (a database query, a log file) until it holds; on timeout the
    error carries ``explain()`` (the state that would tell why)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}\n{explain()}")
        time.sleep(0.05)


class Database:
    """Queries on the test's schema, from outside the workers."""

    def __init__(self, schema: str) -> None:
        self.connection = psycopg.connect(postgres_url(), autocommit=True)
        self.connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

    def value(self, query: str, *params: object) -> int:
        row = self.connection.execute(query, params).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0])

    def state(self, logs: dict[str, Path]) -> str:
        """The workflows by owner and status, and the tail of every worker's log."""
        rows = self.connection.execute(
            "SELECT owner, status, count(*), min(lease_until), max(lease_until),"
            " (extract(epoch from clock_timestamp()) * 1000)::bigint"
            " FROM workflows GROUP BY owner, status ORDER BY owner, status"
        ).fetchall()
        lines = ["owner, status, count, min/max lease_until, now (ms):"]
        lines += [f"  {row}" for row in rows]
        for name, log in logs.items():
            lines += [f"--- {name}.log (tail) ---", log.read_text()[-4000:]]
        return "\n".join(lines)

    def audit_operation_writes(self) -> None:
        """Record every insert or update of an operation row, with the writer."""
        self.connection.execute(
            """
            CREATE TABLE operation_writes (workflow_id TEXT, seq INTEGER, owner TEXT);
            CREATE FUNCTION audit_operation() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO operation_writes
                SELECT NEW.workflow_id, NEW.seq, owner FROM workflows
                WHERE workflows.workflow_id = NEW.workflow_id;
                RETURN NEW;
            END $$;
            CREATE TRIGGER audit AFTER INSERT OR UPDATE ON operations
            FOR EACH ROW EXECUTE FUNCTION audit_operation();
            """
        )


@pytest.fixture
def workers(postgres_schema: str, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Three worker processes, logging to files; killed if the test fails."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name in ("alpha", "bravo", "charlie"):
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, str(PROGRAM), postgres_url(), postgres_schema, name],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).parents[2],
            )
    yield processes
    for process in processes.values():
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()


def test_killed_and_zombie_workers_lose_nothing_and_write_nothing_twice(
    postgres_schema: str, tmp_path: Path, workers: dict[str, subprocess.Popen[bytes]]
) -> None:
    """Every workflow completes exactly once with the right result; every operation
    row is written once (no step result twice); the zombie's late writes are refused."""
    logs = {name: tmp_path / f"{name}.log" for name in workers}
    for name, log in logs.items():
        wait_until(lambda log=log: "started" in log.read_text(), f"worker {name} started")
    database = Database(postgres_schema)
    try:
        run_and_check(database, postgres_schema, logs, workers)
    finally:
        database.connection.close()


def run_and_check(
    database: Database,
    schema: str,
    logs: dict[str, Path],
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    """The scenario of the test above, and its checks."""
    database.audit_operation_writes()

    client = program().make_app(postgres_url(), schema, worker=False)

    async def start_all() -> None:
        async with client:
            for n in range(WORKFLOWS):
                await client.start("ten_steps", n, workflow_id=f"wf-{n:03}")

    asyncio.run(start_all())

    # In the middle of the run: kill one worker, freeze another holding workflows.
    wait_until(
        lambda: database.value("SELECT count(*) FROM operation_writes") >= 600,
        "a fifth of the steps are recorded",
    )
    workers["alpha"].kill()
    workers["alpha"].wait()
    os.kill(workers["bravo"].pid, signal.SIGSTOP)
    held = database.value("SELECT count(*) FROM workflows WHERE owner = 'bravo'")
    assert held > 0, "the frozen worker held no workflow: nothing would test the zombie"
    # Its lease runs out and the surviving worker takes its workflows over.
    wait_until(
        lambda: database.value("SELECT count(*) FROM workflows WHERE owner = 'bravo'") == 0,
        "the zombie's workflows are claimed by another worker",
        explain=lambda: database.state(logs),
    )
    os.kill(workers["bravo"].pid, signal.SIGCONT)

    wait_until(
        lambda: (
            database.value("SELECT count(*) FROM workflows WHERE status = 'COMPLETED'") == WORKFLOWS
        ),
        "every workflow completed",
        timeout=120,
        explain=lambda: database.state(logs),
    )
    for name in ("bravo", "charlie"):
        workers[name].send_signal(signal.SIGTERM)
    for name in ("bravo", "charlie"):
        assert workers[name].wait(timeout=60) == 0, logs[name].read_text()[-3000:]

    rows = database.connection.execute("SELECT workflow_id, status, result FROM workflows")
    results = {workflow_id: (status, result) for workflow_id, status, result in rows}
    expected_total = {f"wf-{n:03}": sum(n * 100 + step for step in range(10)) for n in range(300)}
    assert results == {
        workflow_id: (WorkflowStatus.COMPLETED.value, str(total))
        for workflow_id, total in expected_total.items()
    }
    writes = database.connection.execute(
        "SELECT workflow_id, seq, count(*) FROM operation_writes GROUP BY workflow_id, seq"
    ).fetchall()
    assert len(writes) == WORKFLOWS * 10
    assert {count for _, _, count in writes} == {1}, "a step result was written twice"
    zombie_log = logs["bravo"].read_text()
    assert "is no longer owned by executor 'bravo'" in zombie_log, zombie_log[-3000:]
    # The survivors' stop was graceful: leases released, not left to time out.
    assert database.value("SELECT count(*) FROM workflows WHERE owner IS NOT NULL") == 0
    for name in ("bravo", "charlie"):
        assert f"worker {name} stopped" in logs[name].read_text()


def test_workers_reconnect_after_every_connection_is_terminated(
    postgres_schema: str, tmp_path: Path
) -> None:
    """pg_terminate_backend on every connection of two running workers (twice, in
    the middle of the run): they reconnect and finish every workflow; nothing is lost."""
    tag = f"durably-{postgres_schema}"
    url = f"{postgres_url()}?application_name={tag}"
    count = 100
    processes = []
    for name in ("delta", "echo"):
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(PROGRAM), url, postgres_schema, name],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    database = Database(postgres_schema)
    try:
        for name in ("delta", "echo"):
            log = tmp_path / f"{name}.log"
            wait_until(lambda log=log: "started" in log.read_text(), f"worker {name} started")
        client = program().make_app(postgres_url(), postgres_schema, worker=False)

        async def start_all() -> None:
            async with client:
                for n in range(count):
                    await client.start("ten_steps", n, workflow_id=f"wf-{n:03}")

        asyncio.run(start_all())
        terminated = 0
        for threshold in (200, 500):
            wait_until(
                lambda threshold=threshold: (
                    database.value("SELECT count(*) FROM operations") >= threshold
                ),
                f"{threshold} steps are recorded",
            )
            terminated += database.value(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s) AS killed",
                tag,
            )
        assert terminated >= 4, "the workers' connections were not found"
        wait_until(
            lambda: (
                database.value("SELECT count(*) FROM workflows WHERE status = 'COMPLETED'") == count
            ),
            "every workflow completed after the reconnections",
            timeout=120,
        )
        results = dict(
            database.connection.execute("SELECT workflow_id, result FROM workflows").fetchall()
        )
        assert results == {
            f"wf-{n:03}": str(sum(n * 100 + step for step in range(10))) for n in range(count)
        }
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(timeout=60) == 0
        logs = "".join((tmp_path / f"{name}.log").read_text() for name in ("delta", "echo"))
        assert "connection lost" in logs  # they noticed, and retried
    finally:
        database.connection.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:  # at equal times an end (-1) sorts before a start
        running += change
        most = max(most, running)
    return most


def test_queue_limits_hold_across_three_workers(
    postgres_schema: str, tmp_path: Path, workers: dict[str, subprocess.Popen[bytes]]
) -> None:
    """Concurrency 3 (2 per worker) and 5 starts per second, over three processes:
    measured from the times the steps record and the starts the store records."""
    for name in workers:
        log = tmp_path / f"{name}.log"
        wait_until(lambda log=log: "started" in log.read_text(), f"worker {name} started")
    database = Database(postgres_schema)
    try:
        database.connection.execute(
            "CREATE TABLE step_times (workflow_id TEXT, pid INTEGER,"
            " started TIMESTAMPTZ, ended TIMESTAMPTZ)"
        )
        client = program().make_app(postgres_url(), postgres_schema, worker=False)

        async def enqueue_all() -> None:
            async with client:
                for n in range(30):
                    await client.enqueue("limited_job", f"l-{n}", queue="limited")
                for n in range(15):
                    await client.enqueue("paced_job", f"p-{n}", queue="paced")

        asyncio.run(enqueue_all())
        wait_until(
            lambda: (
                database.value("SELECT count(*) FROM workflows WHERE status = 'COMPLETED'") == 45
            ),
            "every queued workflow completed",
        )
        rows = database.connection.execute(
            "SELECT workflow_id, pid, extract(epoch FROM started)::float8,"
            " extract(epoch FROM ended)::float8 FROM step_times WHERE workflow_id LIKE 'l-%%'"
        ).fetchall()
        assert len(rows) == 30
        assert most_at_once([(start, end) for _, _, start, end in rows]) == 3
        by_worker: dict[int, list[tuple[float, float]]] = {}
        for _, pid, start, end in rows:
            by_worker.setdefault(pid, []).append((start, end))
        assert len(by_worker) >= 2, "one worker ran everything: the test shows nothing"
        assert max(most_at_once(intervals) for intervals in by_worker.values()) <= 2
        starts = [
            started
            for (started,) in database.connection.execute(
                "SELECT started_at FROM workflows WHERE queue_name = 'paced' ORDER BY started_at"
            )
        ]
        assert len(starts) == 15
        gaps = [later - earlier for earlier, later in zip(starts, starts[5:], strict=False)]
        assert min(gaps) >= 1_000_000, f"six starts within one second: {gaps}"
    finally:
        database.connection.close()

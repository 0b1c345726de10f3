"""Three worker processes share 300 workflows on PostgreSQL while one is killed with
SIGKILL and another is stopped past its lease (a zombie) and then resumed; three
workers on PostgreSQL, then on one SQLite file, keep their queues' limits."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

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


def postgres_store_url(schema: str, **options: str) -> str:
    """The store URL of ``schema`` on the test server (``options`` go to libpq)."""
    server = postgres_url()
    return f"{server}{'&' if '?' in server else '?'}{urlencode({**options, 'schema': schema})}"


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

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return self.connection.execute(query).fetchall()  # type: ignore[arg-type]

    def execute(self, statement: str) -> None:
        self.connection.execute(statement)  # type: ignore[arg-type]

    def close(self) -> None:
        self.connection.close()

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


class SqliteDatabase:
    """Queries on the workers' SQLite file, from outside the workers."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, timeout=30, isolation_level=None)

    def value(self, query: str) -> int:
        row = self.connection.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return self.connection.execute(query).fetchall()

    def execute(self, statement: str) -> None:
        self.connection.execute(statement)

    def close(self) -> None:
        self.connection.close()


def connect(store_url: str) -> Database | SqliteDatabase:
    """Queries on the database of ``store_url`` (a SQLite file or a PostgreSQL schema)."""
    if store_url.startswith("sqlite:///"):
        return SqliteDatabase(Path(store_url.removeprefix("sqlite:///")))
    return Database(dict(parse_qsl(urlsplit(store_url).query))["schema"])


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the workers share: a new PostgreSQL schema, or one SQLite file when
    a test is parametrised (indirectly) with ``"sqlite"``."""
    if getattr(request, "param", "postgres") == "sqlite":
        return f"sqlite:///{tmp_path / 'workflows.db'}"
    return postgres_store_url(request.getfixturevalue("postgres_schema"))


@pytest.fixture
def workers(store_url: str, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Three worker processes on ``store_url``, logging to files; killed if the test
    fails."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name in ("alpha", "bravo", "charlie"):
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, str(PROGRAM), store_url, name],
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
    postgres_schema: str,
    store_url: str,
    tmp_path: Path,
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    """Every workflow completes exactly once with the right result; every operation
    row is written once (no step result twice); the zombie's late writes are refused."""
    logs = {name: tmp_path / f"{name}.log" for name in workers}
    for name, log in logs.items():
        wait_until(lambda log=log: "started" in log.read_text(), f"worker {name} started")
    database = Database(postgres_schema)
    try:
        run_and_check(database, store_url, logs, workers)
    finally:
        database.connection.close()


def run_and_check(
    database: Database,
    store_url: str,
    logs: dict[str, Path],
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    """The scenario of the test above, and its checks."""
    database.audit_operation_writes()

    client = program().make_app(store_url, worker=False)

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
    url = postgres_store_url(postgres_schema, application_name=tag)
    count = 100
    processes = []
    for name in ("delta", "echo"):
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(PROGRAM), url, name],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    database = Database(postgres_schema)
    try:
        for name in ("delta", "echo"):
            log = tmp_path / f"{name}.log"
            wait_until(lambda log=log: "started" in log.read_text(), f"worker {name} started")
        client = program().make_app(postgres_store_url(postgres_schema), worker=False)

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


def most_within(moments: list[int], period: int) -> int:
    """The largest number of ``moments`` inside one window ``[t, t + period)``."""
    ordered = sorted(moments)
    most = first = 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize("store_url", ["postgres", "sqlite"], indirect=True)
def test_queue_limits_hold_across_three_workers(
    store_url: str, tmp_path: Path, workers: dict[str, subprocess.Popen[bytes]]
) -> None:
    """Concurrency 3 (2 per worker) and 5 starts per second, over three processes
    sharing a PostgreSQL schema or one SQLite file: measured from the times the steps
    record, and from the starts the store records."""
    for name in workers:
        log = tmp_path / f"{name}.log"
        wait_until(lambda log=log: "started" in log.read_text(), f"worker {name} started")
    worker_program = program()
    database = connect(store_url)
    try:
        database.execute(
            "CREATE TABLE step_times (workflow_id TEXT, pid INTEGER,"
            " started DOUBLE PRECISION, ended DOUBLE PRECISION)"
        )
        client = worker_program.make_app(store_url, worker=False)

        async def enqueue_all() -> None:
            async with client:
                for n in range(30):
                    await client.enqueue("limited_job", queue="limited", workflow_id=f"l-{n:02}")
                for n in range(15):
                    await client.enqueue("paced_job", queue="paced", workflow_id=f"p-{n:02}")

        asyncio.run(enqueue_all())
        wait_until(
            lambda: (
                database.value("SELECT count(*) FROM workflows WHERE status = 'COMPLETED'") == 45
            ),
            "every queued workflow completed",
        )
        steps = database.rows("SELECT workflow_id, pid, started, ended FROM step_times")
        assert sorted(workflow_id for workflow_id, *_ in steps) == [
            *(f"l-{n:02}" for n in range(30)),
            *(f"p-{n:02}" for n in range(15)),
        ], "a step ran twice, or not at all"

        by_worker: dict[int, list[tuple[float, float]]] = {}
        for workflow_id, pid, start, end in steps:
            if workflow_id.startswith("l-"):
                by_worker.setdefault(pid, []).append((start, end))
        everywhere = [interval for intervals in by_worker.values() for interval in intervals]
        assert most_at_once(everywhere) == worker_program.CONCURRENCY
        assert len(by_worker) >= 2, "one worker ran everything: the test shows nothing"
        assert max(map(most_at_once, by_worker.values())) <= worker_program.WORKER_CONCURRENCY

        check_rate(worker_program, database, steps)
    finally:
        database.close()


def check_rate(
    worker_program: ModuleType, database: Database | SqliteDatabase, steps: list[tuple[Any, ...]]
) -> None:
    """No window of the rate's period holds more step starts of the paced queue than
    its limit, but for the slack explained below. In whole microseconds, as the store
    records the claims, so that the bound is exact."""
    limit = worker_program.RATE_LIMIT
    period = worker_program.RATE_PERIOD // timedelta(microseconds=1)
    step_starts = {
        workflow_id: round(start * 1_000_000)
        for workflow_id, _, start, _ in steps
        if workflow_id.startswith("p-")
    }
    # The limiter counts claims (started_at, the claiming worker's clock); a step starts
    # a moment after its workflow's claim (the run is launched, connects, writes). Any
    # limit + 1 claims span at least a period, so any limit + 1 step starts span at
    # least a period less the spread of those claim-to-step delays: the only slack
    # allowed. (The spread does not depend on an offset between the workers' and the
    # database's clocks.)
    query = "SELECT workflow_id, started_at FROM workflows WHERE queue_name = 'paced'"
    claims = {workflow_id: int(started_at) for workflow_id, started_at in database.rows(query)}
    assert claims.keys() == step_starts.keys()
    delays = [step_starts[workflow_id] - claims[workflow_id] for workflow_id in claims]
    slack = max(delays) - min(delays)
    assert slack < period // 2, f"claim-to-step delays spread over {slack} us: too loose a check"
    starts = sorted(step_starts.values())
    assert most_within(starts, period - slack) <= limit, (
        f"more than {limit} step starts within {period - slack} us: {starts}"
    )
    # The limiter's own record, exact.
    assert most_within(list(claims.values()), period) <= limit, sorted(claims.values())

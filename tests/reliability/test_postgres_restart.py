"""A real PostgreSQL server restarted in the middle of a run (fast and immediate
shutdown), and stopped for a moment, then started again.

The shared test server cannot be restarted (other tests use it), so each test makes
its own throwaway cluster: ``initdb`` into a temporary directory, ``pg_ctl start`` on
a free port of 127.0.0.1 with its unix socket in that directory and trust
authentication, run by the current user, or by ``postgres`` through ``runuser`` (or
``su``) when the tests run as root, whom initdb refuses. Without the tools the tests
skip loudly, and fail under CI=true. The cluster is stopped and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from durably import Context, Durably, WorkflowStatus
from durably.store.postgres import PostgresStore

#: The cluster's own directories and log live under one temporary directory with a
#: short path (a unix socket's path is limited to about 100 bytes).
TEMPORARY_ROOT = "/tmp"
#: What a test waits for, at most, for anything (a workflow, the app to see failures).
DEADLINE_SECONDS = 20.0
WORKFLOWS = 24
STEPS = ("reserve", "charge", "pack", "ship")
SIGNAL_WAIT = "waiting for signal 'go'"


def find_pg_ctl() -> Path | None:
    """A ``pg_ctl`` beside an ``initdb``: the one on the PATH, else the newest in
    Debian's layout."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve()] if found else []
    versions = Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
    candidates += sorted(versions, key=lambda path: _version(path.parents[1].name), reverse=True)
    for pg_ctl in candidates:
        if (pg_ctl.parent / "initdb").exists():
            return pg_ctl
    return None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def run_as_prefix() -> list[str] | None:
    """What to put before a command so that it runs as a user initdb accepts: nothing
    for a user other than root; for root, ``runuser -u postgres --`` (None: impossible)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--"]
    su = shutil.which("su")
    return [su, "postgres", "-s", "/bin/sh", "-c"] if su else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A private PostgreSQL cluster: one data directory, one server, one port."""

    def __init__(self, pg_ctl: Path, prefix: list[str], directory: Path) -> None:
        self.pg_ctl = pg_ctl
        self.prefix = prefix
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def command(self, program: Path, *arguments: str) -> list[str]:
        line = [str(program), *arguments]
        if self.prefix and self.prefix[-1] == "-c":  # su takes one shell command
            return [*self.prefix, shlex.join(line)]
        return [*self.prefix, *line]

    def pg_ctl_command(self, action: str, *options: str) -> list[str]:
        server = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        return self.command(
            self.pg_ctl, action, "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", "30", *options, "-o", server,
        )  # fmt: skip

    def create(self) -> None:
        """initdb, then start the server."""
        initdb = self.command(
            self.pg_ctl.parent / "initdb", "-D", str(self.data), "-A", "trust",
            "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        self.check(subprocess.run(initdb, cwd=self.directory, capture_output=True, text=True))
        started = subprocess.run(
            self.pg_ctl_command("start"), cwd=self.directory, capture_output=True, text=True
        )
        self.check(started)

    async def control(self, action: str, *options: str) -> None:
        """Run ``pg_ctl action`` without blocking the event loop (the app runs on)."""
        process = await asyncio.create_subprocess_exec(
            *self.pg_ctl_command(action, *options),
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        self.check(subprocess.CompletedProcess(action, process.returncode or 0, output.decode()))

    def check(self, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            raise AssertionError(
                f"{done.args} exited {done.returncode}: {done.stdout}{done.stderr or ''}\n"
                f"server log:\n{self.log_tail()}"
            )

    def destroy(self) -> None:
        """Stop the server at once if it runs; delete everything."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self.command(self.pg_ctl, "stop", "-D", str(self.data), "-m", "immediate", "-w"),
                cwd=self.directory,
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no server log)"

    def started_at(self) -> object:
        with psycopg.connect(self.url, connect_timeout=5) as connection:
            row = connection.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert row is not None
        return row[0]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    pg_ctl = find_pg_ctl()
    prefix = run_as_prefix()
    problem = (
        "no pg_ctl and initdb on the PATH or in /usr/lib/postgresql/*/bin"
        if pg_ctl is None
        else "running as root, and no 'postgres' user with runuser or su to run initdb as"
        if prefix is None
        else None
    )
    if problem is not None or pg_ctl is None or prefix is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the PostgreSQL restart tests must run under CI=true: {problem}")
        pytest.skip(f"SKIPPING THE POSTGRESQL RESTART TESTS: {problem}")
    directory = Path(tempfile.mkdtemp(prefix="durably-pg-", dir=TEMPORARY_ROOT))
    server = Cluster(pg_ctl, prefix, directory)
    try:
        if prefix:
            user = pwd.getpwnam("postgres")
            os.chown(directory, user.pw_uid, user.pw_gid)
        server.create()
        yield server
    finally:
        server.destroy()


class ConnectionFailures(logging.Handler):
    """Counts the PostgreSQL store's warnings: each is a connection lost or refused."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture
def failures() -> Iterator[ConnectionFailures]:
    handler = ConnectionFailures()
    logger = logging.getLogger("durably.store.postgres")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds, failing after the deadline."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up after {DEADLINE_SECONDS:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


async def restart(cluster: Cluster, outage_begun: asyncio.Event, mode: str) -> None:
    """``pg_ctl restart``: the server ends every session (``fast``: rolling back what
    runs; ``immediate``: a crash, then WAL recovery at start) and starts again."""
    restarting = asyncio.ensure_future(cluster.control("restart", "-m", mode))
    outage_begun.set()
    await restarting


async def stop_then_start(
    cluster: Cluster, outage_begun: asyncio.Event, failures: ConnectionFailures
) -> None:
    """``pg_ctl stop``; the workflows go on, and their writes fail until the app has
    reported lost connections a few times; then ``pg_ctl start``."""
    await cluster.control("stop", "-m", "fast")
    seen = failures.count
    outage_begun.set()
    await until(lambda: failures.count >= seen + 3, "the app to see the server gone")
    await cluster.control("start")


def describe(app: Durably, cluster: Cluster, workflow_ids: list[str]) -> str:
    """What the store and the app say of workflows that did not finish."""
    lines = [f"{len(workflow_ids)} workflow(s) did not finish:"]
    with psycopg.connect(cluster.url) as connection:
        connection.execute("SET search_path TO restart")
        for workflow_id in workflow_ids:
            workflow = connection.execute(
                "SELECT status, owner, fence, lease_until, wake_at, wait_reason,"
                " recovery_attempts FROM workflows WHERE workflow_id = %s",
                (workflow_id,),
            ).fetchone()
            operations = connection.execute(
                "SELECT seq, name, status FROM operations WHERE workflow_id = %s ORDER BY seq",
                (workflow_id,),
            ).fetchall()
            signals = connection.execute(
                "SELECT signal_id, consumed_seq FROM signals WHERE workflow_id = %s",
                (workflow_id,),
            ).fetchall()
            lines.append(
                f"{workflow_id}: (status, owner, fence, lease_until, wake_at, wait_reason,"
                f" recovery_attempts) {workflow}; operations {operations}; signals {signals};"
                f" running here {workflow_id in app._runs}; this executor {app.executor_id}"
            )
    lines.append(f"server log:\n{cluster.log_tail()}")
    return "\n".join(lines)


async def until_suspended_on_signal(
    app: Durably, cluster: Cluster, workflow_ids: list[str]
) -> None:
    """Poll the store until every workflow of ``workflow_ids`` is suspended on its signal."""
    pending = set(workflow_ids)
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
    while pending:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(describe(app, cluster, sorted(pending)))
        suspended = await app.list_workflows(status=WorkflowStatus.SUSPENDED, limit=WORKFLOWS)
        pending -= {info.workflow_id for info in suspended if info.wait_reason == SIGNAL_WAIT}
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("outage", ["restart", "immediate restart", "stop, then start"])
async def test_a_server_restarted_mid_run_completes_every_workflow_once(
    cluster: Cluster,
    failures: ConnectionFailures,
    outage: str,
    record_property: Callable[[str, object], None],
) -> None:
    """Three groups of workflows meet the outage (``pg_ctl restart`` launched, or the
    server stopped) at different points: suspended on their signal, which is sent as
    the outage begins; held in a step, their signal already sent, then recording that
    step and the next ones across the outage; started as it begins, and signalled once
    suspended after it. Every workflow completes with its result, each step's body ran
    once and is recorded once (no failed attempt recorded), every signal was consumed
    once; a new app afterwards finds nothing to recover.

    A signal sent while its workflow is suspending (the race this test first found) is
    tested on its own, both orders made deterministic with a held row lock:
    test_postgres_storage_faults.py::test_a_signal_appended_while_its_workflow_suspends*.
    """
    bodies: Counter[str] = Counter()
    outage_begun = asyncio.Event()
    app = Durably(
        PostgresStore(cluster.url, schema="restart", pool_size=4),
        inline_wait=0,
        poll_interval=timedelta(milliseconds=50),
    )
    third = WORKFLOWS // 3
    at_rest = [f"order-{n}" for n in range(third)]
    held = [f"order-{n}" for n in range(third, 2 * third)]
    late = [f"order-{n}" for n in range(2 * third, WORKFLOWS)]

    async def step_body(name: str, n: int, so_far: str) -> str:
        bodies[f"{name}-{n}"] += 1
        if name == "pack" and f"order-{n}" in held:  # the run is mid-way at the outage
            await outage_begun.wait()
        return f"{so_far}:{name}"

    @app.workflow(name="order")
    async def order(ctx: Context, n: int) -> str:
        value = str(n)
        for name in STEPS[:3]:
            value = await ctx.step(name, step_body, name, n, value)
        note = await ctx.wait_signal("go", timeout=timedelta(minutes=5), payload_type=str)
        return await ctx.step(STEPS[3], step_body, STEPS[3], n, f"{value}:{note}")

    async def signal(workflow_id: str) -> None:
        n = workflow_id.removeprefix("order-")
        await app.send_signal(workflow_id, "go", f"go-{n}", dedup_key=f"go-{n}")

    started_before = cluster.started_at()
    async with app:
        for n in range(2 * third):
            await app.start(order, n, workflow_id=f"order-{n}")
        await until_suspended_on_signal(app, cluster, at_rest)
        held_in_step = [f"pack-{workflow_id.removeprefix('order-')}" for workflow_id in held]
        await until(lambda: all(bodies[step] == 1 for step in held_in_step), "the held step")
        await asyncio.gather(*(signal(workflow_id) for workflow_id in held))
        seen_before = failures.count
        if outage == "stop, then start":
            down = asyncio.ensure_future(stop_then_start(cluster, outage_begun, failures))
        else:
            mode = "immediate" if outage.startswith("immediate") else "fast"
            down = asyncio.ensure_future(restart(cluster, outage_begun, mode))
        await outage_begun.wait()
        await asyncio.gather(
            *(signal(workflow_id) for workflow_id in at_rest),
            *(app.start(order, n, workflow_id=f"order-{n}") for n in range(2 * third, WORKFLOWS)),
        )
        await down
        await until_suspended_on_signal(app, cluster, late)
        await asyncio.gather(*(signal(workflow_id) for workflow_id in late))
        results = await asyncio.gather(
            *(app.handle(f"order-{n}").result(timeout=DEADLINE_SECONDS) for n in range(WORKFLOWS)),
            return_exceptions=True,
        )
        unfinished = [n for n, result in enumerate(results) if isinstance(result, BaseException)]
        if unfinished:
            raise AssertionError(describe(app, cluster, [f"order-{n}" for n in unfinished]))
    assert results == [f"{n}:reserve:charge:pack:go-{n}:ship" for n in range(WORKFLOWS)]
    assert bodies == Counter({f"{name}-{n}": 1 for name in STEPS for n in range(WORKFLOWS)})
    assert cluster.started_at() != started_before  # the server did restart
    assert failures.count > seen_before, "the app never saw the server go"

    with psycopg.connect(cluster.url) as connection:
        connection.execute("SET search_path TO restart")
        operations = connection.execute(
            "SELECT workflow_id, array_agg(name ORDER BY seq), sum(attempts), count(*)"
            " FROM operations GROUP BY workflow_id ORDER BY workflow_id"
        ).fetchall()
        failed_attempts = connection.execute("SELECT count(*) FROM attempts").fetchone()
        signals = connection.execute(
            "SELECT count(*), count(consumed_seq), count(DISTINCT workflow_id) FROM signals"
        ).fetchone()
    expected = [*STEPS[:3], "go", STEPS[3]]
    assert len(operations) == WORKFLOWS
    for workflow_id, names, attempts, rows in operations:
        assert (names, attempts, rows) == (expected, len(expected), len(expected)), workflow_id
    assert failed_attempts == (0,)
    assert signals == (WORKFLOWS, WORKFLOWS, WORKFLOWS)

    again = Durably(PostgresStore(cluster.url, schema="restart", pool_size=2), inline_wait=0)
    again.workflow(name="order")(order)
    async with again:
        assert (await again.recover()).resumed == ()
        counts = await again.store.count_workflows()
    assert {str(status): count for status, count in counts.items()} == {"COMPLETED": WORKFLOWS}
    record_property("faults_injected", failures.count - seen_before)

"""Storage faults under the SQLite store: a full disk, a locked database beyond the
busy timeout, I/O errors, a read-only file.

What must hold for each: a fault that retrying can absorb is retried and never seen
(SQLITE_BUSY within the retries); any other fault fails the write with a
:class:`StoreError` that names the database and SQLite's error, and writes nothing; a
workflow whose checkpoint failed is run again once the store works, by replay (a step
whose result was recorded never runs again); and a new app recovers every workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlite_faults import (
    SQLITE_BUSY,
    SQLITE_FULL,
    SQLITE_IOERR,
    SQLITE_IOERR_FSYNC,
    SQLITE_IOERR_WRITE,
    SQLITE_LOCKED,
    SQLITE_READONLY,
    StatementFaults,
    inject_faults,
    open_read_only,
    permissions_stop_writes,
    recorded,
)

from durably import Context, Durably, Observer, SqliteStore, StoreError, WorkflowStatus
from durably.store.sqlite import store as sqlite_store_module
from durably.store.sqlite._writer import SqliteWriter
from durably.testing import FakeClock

POLL = timedelta(milliseconds=10)
BIG = "x" * 20_000  # needs new database pages: a full database must refuse it


class StoreErrors(Observer):
    """Collects the store errors the engine reports, and wakes a waiting test."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str, BaseException]] = []
        self.seen = asyncio.Event()

    def on_error(self, workflow_id: str, context: str, error: BaseException) -> None:
        if isinstance(error, StoreError):
            self.errors.append((workflow_id, context, error))
            self.seen.set()


class Ledger:
    """A three-step workflow whose middle step waits for the test; counts step runs."""

    def __init__(self, app: Durably) -> None:
        self.runs: Counter[str] = Counter()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

        async def first(n: int) -> str:
            self.runs["first"] += 1
            return f"first-{n}"

        async def second(n: int) -> str:
            self.runs["second"] += 1
            self.entered.set()
            await self.gate.wait()
            return BIG

        async def third(n: int) -> str:
            self.runs["third"] += 1
            return f"third-{n}"

        @app.workflow(name="ledger")
        async def ledger(ctx: Context, n: int, note: str = "") -> str:
            one = await ctx.step("first", first, n)
            two = await ctx.step("second", second, n)
            three = await ctx.step("third", third, n)
            return f"{one}|{len(two)}|{three}"

        self.workflow = ledger

    @staticmethod
    def expected(n: int) -> str:
        return f"first-{n}|{len(BIG)}|third-{n}"


def make_app(
    path: Path, observer: Observer | None = None, **options: Any
) -> tuple[Durably, Ledger]:
    app = Durably(
        SqliteStore(path),
        poll_interval=POLL,
        observers=[observer] if observer else [],
        **options,
    )
    return app, Ledger(app)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "durably.db"


async def hold_in_second_step(app: Durably, ledger: Ledger, workflow_id: str) -> None:
    """Start a ledger workflow and wait until its second step is running (its first
    step's result recorded, the second's not yet)."""
    ledger.gate.clear()
    ledger.entered.clear()
    await app.start(ledger.workflow, 1, workflow_id=workflow_id)
    await ledger.entered.wait()


async def fail_write_while_faulty(
    app: Durably, ledger: Ledger, errors: StoreErrors, database: Path, match: str
) -> None:
    """With the store failing: a new start is refused clearly and writes nothing; the
    running workflow's checkpoint fails (it will run again)."""
    before = recorded(database)
    with pytest.raises(StoreError, match=match) as refused:
        await app.start(ledger.workflow, 2, note=BIG, workflow_id="refused")
    assert str(database) in str(refused.value)
    ledger.gate.set()
    await errors.seen.wait()
    assert errors.errors[0][0] == "w-1"
    assert recorded(database) == before, "a failed write changed the database"


async def finishes_with_each_recorded_step_run_once(app: Durably, ledger: Ledger) -> None:
    assert await app.handle("w-1").result() == Ledger.expected(1)
    assert ledger.runs["first"] == 1, "a recorded step ran again"
    assert ledger.runs["second"] >= 2  # its result was never recorded: it runs again
    assert ledger.runs["third"] == 1
    history = await app.store.load_history("w-1")
    assert [operation.name for operation in history.operations.values()] == [
        "first",
        "second",
        "third",
    ]


# -- a full disk ------------------------------------------------------------------------


async def set_max_pages(store: SqliteStore, pages: int | None) -> None:
    """Cap the database at ``pages`` pages (its current size when None): SQLite then
    answers SQLITE_FULL to any write that needs a new page, as on a full disk."""

    def cap(connection: sqlite3.Connection) -> None:
        limit = pages
        if limit is None:
            limit = int(connection.execute("PRAGMA page_count").fetchone()[0])
        connection.execute(f"PRAGMA max_page_count = {int(limit)}")

    await store.writer.submit(cap)


async def test_a_full_disk_refuses_new_work_clearly_and_running_work_resumes(
    database: Path, record_property: Callable[[str, object], None]
) -> None:
    """A real SQLITE_FULL: a start is refused with the reason, nothing is written, the
    running workflow's checkpoint fails; once space is back it finishes, and its
    recorded steps never ran again."""
    errors = StoreErrors()
    app, ledger = make_app(database, errors)
    async with app:
        store = app.store
        assert isinstance(store, SqliteStore)
        await hold_in_second_step(app, ledger, "w-1")
        await set_max_pages(store, None)
        await fail_write_while_faulty(app, ledger, errors, database, "database or disk is full")
        await set_max_pages(store, 1_073_741_823)
        await finishes_with_each_recorded_step_run_once(app, ledger)
        assert await app.run(ledger.workflow, 2, note=BIG, workflow_id="after") == Ledger.expected(
            2
        )
    record_property("faults_injected", len(errors.errors) + 1)


# -- injected errors under the store ----------------------------------------------------

INJECTED = [
    pytest.param(SQLITE_FULL, "COMMIT", "database or disk is full", id="full-at-commit"),
    pytest.param(SQLITE_IOERR_WRITE, "INSERT INTO", "disk I/O error", id="ioerr-write"),
    pytest.param(SQLITE_IOERR_FSYNC, "COMMIT", "disk I/O error", id="ioerr-fsync-at-commit"),
    pytest.param(SQLITE_READONLY, "BEGIN IMMEDIATE", "readonly database", id="readonly"),
]


@pytest.mark.parametrize(("code", "statement", "message"), INJECTED)
async def test_an_injected_storage_error_is_clear_and_the_workflow_runs_again(
    database: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    statement: str,
    message: str,
    record_property: Callable[[str, object], None],
) -> None:
    """The exact SQLite error at the chosen statement, for as long as the test says:
    every write fails clearly and writes nothing; afterwards the workflow finishes."""
    faults = StatementFaults()
    inject_faults(monkeypatch, faults)
    errors = StoreErrors()
    app, ledger = make_app(database, errors)
    async with app:
        await hold_in_second_step(app, ledger, "w-1")
        faults.fail(code, statement, times=None)
        await fail_write_while_faulty(app, ledger, errors, database, message)
        faults.clear()
        await finishes_with_each_recorded_step_run_once(app, ledger)
    assert faults.injected >= 2
    record_property("faults_injected", faults.injected)


async def test_an_io_error_on_a_read_is_retried_by_running_the_workflow_again(
    database: Path, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    """SQLITE_IOERR while loading a workflow's history: the run stops before doing
    anything and runs again; nothing runs twice. (A workflow started by this process
    has nothing to load; one claimed from a queue loads its history.)"""
    faults = StatementFaults()
    inject_faults(monkeypatch, faults)
    app, ledger = make_app(database)
    app.queue("reads")
    async with app:
        faults.fail(SQLITE_IOERR, "FROM operations", times=3, readers=True)
        handle = await app.enqueue(ledger.workflow, 1, queue="reads", workflow_id="w-1")
        assert await handle.result() == Ledger.expected(1)
    assert faults.injected == 3
    assert ledger.runs == Counter(first=1, second=1, third=1)
    record_property("faults_injected", faults.injected)


# -- a locked database ------------------------------------------------------------------


@pytest.mark.parametrize("code", [SQLITE_BUSY, SQLITE_LOCKED])
async def test_a_lock_that_clears_within_the_retries_is_never_seen(
    database: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    record_property: Callable[[str, object], None],
) -> None:
    """BEGIN IMMEDIATE refused as locked five times (the loop's attempt and four of the
    writer thread's five): the write succeeds, the engine sees no error."""
    faults = StatementFaults()
    inject_faults(monkeypatch, faults)
    errors = StoreErrors()
    app, ledger = make_app(database, errors)
    async with app:
        await hold_in_second_step(app, ledger, "w-1")
        faults.fail(code, "BEGIN IMMEDIATE", times=5)
        ledger.gate.set()
        assert await app.handle("w-1").result() == Ledger.expected(1)
    assert faults.injected == 5
    assert errors.errors == []
    assert ledger.runs == Counter(first=1, second=1, third=1)
    record_property("faults_injected", faults.injected)


async def test_a_lock_beyond_every_retry_is_a_clear_error_then_work_resumes(
    database: Path, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    """Locked through every attempt: the caller is told the file stayed locked and
    what to look for; the workflow runs again once the lock is gone."""
    faults = StatementFaults()
    inject_faults(monkeypatch, faults)
    errors = StoreErrors()
    app, ledger = make_app(database, errors)
    async with app:
        await hold_in_second_step(app, ledger, "w-1")
        faults.fail(SQLITE_BUSY, "BEGIN IMMEDIATE", times=None)
        await fail_write_while_faulty(app, ledger, errors, database, "stayed locked")
        faults.clear()
        await finishes_with_each_recorded_step_run_once(app, ledger)
    record_property("faults_injected", faults.injected)


LOCK_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
print("released", flush=True)
"""


async def test_another_process_holding_the_lock_past_the_busy_timeout(
    database: Path, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    """A real lock, held by another process past the busy timeout (shortened to 20 ms
    here, with one retry, so that "past" is quick): writes fail clearly, reads go on
    (WAL), and the workflow finishes once the other process lets go."""
    monkeypatch.setattr(
        sqlite_store_module,
        "SqliteWriter",
        functools.partial(SqliteWriter, busy_timeout_ms=20, busy_retries=1),
    )
    errors = StoreErrors()
    app, ledger = make_app(database, errors)
    async with app:
        await hold_in_second_step(app, ledger, "w-1")
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            LOCK_HOLDER,
            str(database),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert await holder.stdout.readline() == b"locked\n"
            await fail_write_while_faulty(app, ledger, errors, database, "stayed locked")
            info = await app.get_workflow("w-1")  # reads are not blocked by the writer
            assert info.status is WorkflowStatus.RUNNING
            holder.stdin.write(b"go\n")
            await holder.stdin.drain()
            assert await holder.stdout.readline() == b"released\n"
        finally:
            if holder.returncode is None:
                holder.kill()
            await holder.wait()
        await finishes_with_each_recorded_step_run_once(app, ledger)
    record_property("faults_injected", len(errors.errors))


# -- a read-only database ---------------------------------------------------------------


async def test_a_read_only_database_is_refused_clearly_and_left_untouched(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database the process may not write (a file without write permission, or, as
    root, a read-only open like a read-only mount): opening the app fails with a
    StoreError that says so, and not one byte of the file changes; once it is
    writable again, a new app recovers the work left in it (a workflow stopped in a
    step, one waiting for a signal) and no recorded step runs again."""
    app, ledger = make_app(database)
    _, waiter = register_waiting_workflows(app)
    async with app:
        await app.run(ledger.workflow, 1, workflow_id="w-1")
        await app.start(waiter, workflow_id="waiting")
        await hold_in_second_step(app, ledger, "w-2")
    content = file_bytes(database)
    with monkeypatch.context() as patched:
        if not make_read_only(database):
            open_read_only(patched)  # root: permissions would not stop it
        try:
            reopened, _ = make_app(database)
            with pytest.raises(StoreError, match=r"readonly|read-only|read only") as refused:
                await open_and_close(reopened)
            assert str(database) in str(refused.value)
        finally:
            make_writable(database)
    assert file_bytes(database) == content
    restarted, ledger_again = make_app(database)
    register_waiting_workflows(restarted)
    async with restarted:
        await restarted.send_signal("waiting", "go", "payload")
        assert await restarted.handle("w-2").result() == Ledger.expected(1)
        assert await restarted.handle("waiting").result() == "payload"
        assert await restarted.handle("w-1").result() == Ledger.expected(1)
    assert ledger.runs + ledger_again.runs == Counter(first=2, second=3, third=2)


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


def make_read_only(database: Path) -> bool:
    """Take away write permission on the database and its directory (where SQLite
    would create -wal and -shm); False when that does not stop this process (root)."""
    if not permissions_stop_writes(database.parent):
        return False
    database.chmod(0o400)
    database.parent.chmod(0o500)
    return True


def make_writable(database: Path) -> None:
    database.parent.chmod(0o700)
    database.chmod(0o600)


async def open_and_close(app: Durably) -> None:
    async with app:
        pass


async def test_a_database_made_read_only_mid_run_recovers_when_writable_again(
    database: Path, record_property: Callable[[str, object], None]
) -> None:
    """``PRAGMA query_only`` on the store's own connection: SQLite refuses every write
    with SQLITE_READONLY while the workflow runs; it finishes once writes are allowed."""
    errors = StoreErrors()
    app, ledger = make_app(database, errors)
    async with app:
        store = app.store
        assert isinstance(store, SqliteStore)
        await hold_in_second_step(app, ledger, "w-1")
        await store.writer.submit(lambda c: c.execute("PRAGMA query_only = 1"))
        await fail_write_while_faulty(app, ledger, errors, database, "readonly database")
        # Every write transaction is refused now, so the pragma that allows writes
        # again goes straight to the writer's connection, under the writer's lock.
        writer = store.writer
        with writer._lock:
            assert writer._connection is not None
            writer._connection.execute("PRAGMA query_only = 0")
        await finishes_with_each_recorded_step_run_once(app, ledger)
    record_property("faults_injected", len(errors.errors))


# -- a restart after the fault -----------------------------------------------------------


class RestartFault:
    """A storage fault that begins while workflows are in every state, lasts through
    the app's close, and is repaired before a new app opens the database."""

    #: What the refused writes say.
    message = ""

    async def begin(self, app: Durably) -> None:
        raise NotImplementedError

    async def repair(self) -> None:
        """Make the disk work again (nothing to do for a fault that belonged to the
        old app's connection: a new app opens its own)."""

    @property
    def injected(self) -> int:
        """How many faults the test met (at least the one it began)."""
        return 1

    async def discard(self) -> None:
        """Release what the fault holds if the test ends early."""


class InjectedFault(RestartFault):
    """The exact SQLite error at a statement, until repaired."""

    def __init__(self, faults: StatementFaults, code: int, statement: str, message: str) -> None:
        self.faults, self.code, self.statement, self.message = faults, code, statement, message

    async def begin(self, app: Durably) -> None:
        self.faults.fail(self.code, self.statement, times=None)

    async def repair(self) -> None:
        self.faults.clear()

    @property
    def injected(self) -> int:
        return self.faults.injected


class FullDisk(RestartFault):
    """A real SQLITE_FULL: the old app's connection may not grow the database."""

    message = "database or disk is full"

    async def begin(self, app: Durably) -> None:
        assert isinstance(app.store, SqliteStore)
        await set_max_pages(app.store, None)


class QueryOnly(RestartFault):
    """A real SQLITE_READONLY: ``PRAGMA query_only`` on the old app's connection."""

    message = "readonly database"

    async def begin(self, app: Durably) -> None:
        assert isinstance(app.store, SqliteStore)
        await app.store.writer.submit(lambda c: c.execute("PRAGMA query_only = 1"))


class LockHolder(RestartFault):
    """A real lock, held by another process until repaired."""

    message = "stayed locked"

    def __init__(self, database: Path) -> None:
        self.database = database
        self.process: asyncio.subprocess.Process | None = None

    async def begin(self, app: Durably) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            LOCK_HOLDER,
            str(self.database),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert await self.process.stdout.readline() == b"locked\n"

    async def repair(self) -> None:
        assert self.process is not None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        assert await self.process.stdout.readline() == b"released\n"
        await self.process.wait()

    async def discard(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def restart_fault(kind: str, database: Path, monkeypatch: pytest.MonkeyPatch) -> RestartFault:
    """The fault ``kind``, with whatever it needs patched in for this test."""
    if kind.startswith("locked"):
        # The lock outlasts every retry quickly: a 20 ms busy timeout, one retry.
        monkeypatch.setattr(
            sqlite_store_module,
            "SqliteWriter",
            functools.partial(SqliteWriter, busy_timeout_ms=20, busy_retries=1),
        )
    if kind == "full":
        return FullDisk()
    if kind == "read-only":
        return QueryOnly()
    if kind == "locked-by-another-process":
        return LockHolder(database)
    faults = StatementFaults()
    inject_faults(monkeypatch, faults)
    if kind == "locked-beyond-retries":
        return InjectedFault(faults, SQLITE_BUSY, "BEGIN IMMEDIATE", "stayed locked")
    assert kind == "ioerr-at-commit", kind
    return InjectedFault(faults, SQLITE_IOERR, "COMMIT", "disk I/O error")


@pytest.mark.parametrize(
    "kind",
    [
        "ioerr-at-commit",
        "full",
        "locked-beyond-retries",
        "locked-by-another-process",
        "read-only",
    ],
)
async def test_a_restart_after_a_storage_fault_recovers_every_workflow(
    database: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    record_property: Callable[[str, object], None],
) -> None:
    """The disk fails (an I/O error on every commit, a full disk, a lock held past
    every retry, a read-only database) while workflows are in every state; the app is
    stopped (even its close may fail); a new app on the repaired disk recovers and
    finishes every one of them, and no recorded step runs again."""
    fault = restart_fault(kind, database, monkeypatch)
    clock = FakeClock()
    app, ledger = make_app(database, clock=clock)
    sleeper, waiter = register_waiting_workflows(app)
    try:
        with contextlib.suppress(StoreError):  # closing on a failing disk may fail too
            async with app:
                await app.start(sleeper, workflow_id="sleeping")
                await app.start(waiter, workflow_id="waiting")
                await hold_in_second_step(app, ledger, "w-1")
                ledger.entered.clear()
                await app.start(ledger.workflow, 3, workflow_id="w-3")
                await ledger.entered.wait()
                before = recorded(database)
                await fault.begin(app)
                ledger.gate.set()
                with pytest.raises(StoreError, match=fault.message):
                    await app.send_signal("waiting", "go", BIG)
                with pytest.raises(StoreError, match=fault.message):
                    await app.start(ledger.workflow, 4, note=BIG, workflow_id="refused")
        await fault.repair()
    finally:
        await fault.discard()
    assert recorded(database)["signals"] == before["signals"]
    clock.advance(timedelta(minutes=1))  # past the leases the old app may have kept
    restarted, ledger_again = make_app(database, clock=clock)
    register_waiting_workflows(restarted)
    async with restarted:
        await restarted.send_signal("waiting", "go", "payload")
        assert await restarted.handle("w-1").result() == Ledger.expected(1)
        assert await restarted.handle("w-3").result() == Ledger.expected(3)
        assert await restarted.handle("sleeping").result() == "slept"
        assert await restarted.handle("waiting").result() == "payload"
        assert await restarted.store.get_workflow("refused") is None
        for workflow_id in ("w-1", "w-3"):
            history = await restarted.store.load_history(workflow_id)
            assert [operation.name for operation in history.operations.values()] == [
                "first",
                "second",
                "third",
            ]
    runs = ledger.runs + ledger_again.runs
    assert runs["first"] == 2 and runs["third"] == 2  # once per workflow
    record_property("faults_injected", fault.injected)


def register_waiting_workflows(app: Durably) -> tuple[Any, Any]:
    @app.workflow(name="sleeper")
    async def sleeper(ctx: Context) -> str:
        await ctx.sleep("nap", timedelta(milliseconds=50))
        return "slept"

    @app.workflow(name="waiter")
    async def waiter(ctx: Context) -> object:
        return await ctx.wait_signal("go")

    return sleeper, waiter

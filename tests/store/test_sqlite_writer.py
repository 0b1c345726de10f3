"""The SQLite writer thread: group commit, failure isolation, locked databases."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durably.errors import LeaseLostError, StoreError
from durably.models import Fence
from durably.store import SqliteStore
from durably.store.sqlite._connect import connect_and_migrate
from durably.store.sqlite._writer import SqliteWriter
from durably.testing.store_contract import claimed, operation, workflow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open store on a new file, whose writes all wait for the loop's next turn (as
    under load), so that writes submitted in one turn share a batch."""
    store = SqliteStore(tmp_path / "durably.db")
    await store.open()
    store.writer.max_writes_without_yield = 0
    yield store
    await store.close()


@pytest.fixture
async def idle_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open store with the writer's defaults: a write that comes alone is committed
    in its caller's step."""
    store = SqliteStore(tmp_path / "durably.db")
    await store.open()
    yield store
    await store.close()


async def queued(count: int, writer: SqliteWriter) -> None:
    """Let freshly created write tasks submit, and check that their writes wait for the
    same flush (writes submitted in one turn of the event loop commit together)."""
    await asyncio.sleep(0)
    assert len(writer._pending) == count


def counters(writer: SqliteWriter) -> tuple[int, int]:
    """(committed transactions, committed writes) so far."""
    return writer.committed_transactions, writer.committed_writes


def statements_of(store: SqliteStore) -> list[str]:
    """Record the first word of every statement the store's writer connection runs."""
    seen: list[str] = []
    connection = store.writer._connection
    assert connection is not None
    connection.set_trace_callback(lambda sql: seen.append(sql.split(None, 1)[0].upper()))
    return seen


# -- group commit ----------------------------------------------------------------------


async def test_concurrent_steps_of_many_workflows_share_commits(store: SqliteStore) -> None:
    """200 concurrent record_operation calls commit in fewer transactions than writes,
    and each call returns only once its own write is committed."""
    fences = [await claimed(store, f"w-{index:03}") for index in range(200)]
    before = counters(store.writer)
    await asyncio.gather(
        *(store.record_operation(fence, operation(fence.workflow_id)) for fence in fences)
    )
    transactions = store.writer.committed_transactions - before[0]
    writes = store.writer.committed_writes - before[1]
    assert writes == 200
    assert transactions < writes, f"{transactions} transactions for {writes} writes"
    for fence in fences:
        assert 0 in (await store.load_history(fence.workflow_id)).operations


async def test_writes_queued_behind_a_busy_writer_commit_as_one(store: SqliteStore) -> None:
    """Every write submitted in one turn of the event loop goes into one transaction."""
    fences = [await claimed(store, f"w-{index:03}") for index in range(100)]
    before = counters(store.writer)
    writes = [
        asyncio.ensure_future(store.record_operation(fence, operation(fence.workflow_id)))
        for fence in fences
    ]
    await queued(100, store.writer)
    await asyncio.gather(*writes)
    transactions = store.writer.committed_transactions - before[0]
    assert (transactions, store.writer.committed_writes - before[1]) == (1, 100)


async def test_a_batch_holds_at_most_max_batch_writes(tmp_path: Path) -> None:
    """25 writes submitted together with a batch limit of 10 commit in 3 transactions."""
    path = tmp_path / "batch.db"
    writer = SqliteWriter(
        lambda: connect_and_migrate(path, "NORMAL"),
        name="t",
        max_batch=10,
        max_writes_without_yield=0,
    )
    await writer.start()
    try:
        writes = [asyncio.ensure_future(writer.submit(lambda _: None)) for _ in range(25)]
        await queued(25, writer)
        await asyncio.gather(*writes)
        assert counters(writer) == (3, 25)
    finally:
        await writer.stop()


# -- failures inside a batch -----------------------------------------------------------


async def test_a_refused_write_fails_alone_in_its_batch(store: SqliteStore) -> None:
    """A stale fence in the middle of a batch raises LeaseLostError for that caller
    only; the writes around it commit. Checkpoints are single statements: SQLite undoes
    a failed one by itself, so none needs a savepoint."""
    first, second = await claimed(store, "first"), await claimed(store, "second")
    await store.create_workflow(workflow("stale"))
    stale = Fence(workflow_id="stale", owner="nobody", fence=7)
    before = counters(store.writer)
    statements = statements_of(store)
    writes = [
        asyncio.ensure_future(store.record_operation(fence, operation(fence.workflow_id)))
        for fence in (first, stale, second)
    ]
    await queued(3, store.writer)
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], LeaseLostError)
    assert counters(store.writer) == (before[0] + 1, before[1] + 2)
    assert statements == ["BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]
    assert 0 in (await store.load_history("first")).operations
    assert 0 in (await store.load_history("second")).operations
    assert (await store.load_history("stale")).operations == {}


async def test_a_write_that_fails_halfway_is_rolled_back_entirely(store: SqliteStore) -> None:
    """Its savepoint undoes what it wrote before raising; its neighbours are kept."""

    def half_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute(
            "INSERT INTO executors (executor_id, hostname, pid, heartbeat_at)"
            " VALUES ('half', 'h', 1, 1)"
        )
        raise ValueError("changed my mind")

    good = asyncio.ensure_future(store.create_workflow(workflow()))
    bad = asyncio.ensure_future(store.writer.submit(half_then_fail))
    await queued(2, store.writer)
    assert (await good)[1] is True
    with pytest.raises(ValueError, match="changed my mind"):
        await bad
    assert await store.list_executors() == []


async def test_a_failed_commit_fails_every_write_of_its_batch(store: SqliteStore) -> None:
    """When COMMIT fails, nothing of the batch is kept and every caller gets a
    StoreError caused by the SQLite error."""
    fence = await claimed(store)

    def violate_at_commit(connection: sqlite3.Connection) -> None:
        # A deferred foreign-key violation is only detected by COMMIT.
        connection.execute("PRAGMA defer_foreign_keys = ON")
        connection.execute(
            "INSERT INTO signals (workflow_id, name, created_at) VALUES ('nobody', 's', 0)"
        )

    good = asyncio.ensure_future(store.record_operation(fence, operation()))
    bad = asyncio.ensure_future(store.writer.submit(violate_at_commit))
    await queued(2, store.writer)
    for write in (good, bad):
        with pytest.raises(StoreError, match="none of its writes were committed") as caught:
            await write
        assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert (await store.load_history("w-1")).operations == {}
    await store.record_operation(fence, operation())
    assert 0 in (await store.load_history("w-1")).operations


@pytest.mark.parametrize("one_statement", [False, True])
async def test_an_sqlite_error_in_a_write_is_a_store_error(
    store: SqliteStore, one_statement: bool
) -> None:
    """The caller sees StoreError with the driver's error as its cause, whether the
    write ran in a transaction or alone in autocommit mode."""
    with pytest.raises(StoreError) as caught:
        await store.writer.submit(
            lambda c: c.execute("INSERT INTO nowhere VALUES (1)"), one_statement=one_statement
        )
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert await store.writer.submit(lambda c: 1, one_statement=one_statement) == 1


# -- locked databases ------------------------------------------------------------------


def impatient_writer(path: Path, pauses: list[float]) -> SqliteWriter:
    """A writer whose busy timeout is zero, recording its pauses between retries."""

    def connect() -> sqlite3.Connection:
        connection = connect_and_migrate(path, "NORMAL")
        connection.execute("PRAGMA busy_timeout = 0")
        return connection

    return SqliteWriter(
        connect, name=str(path), busy_retries=3, busy_timeout_ms=0, pause=pauses.append
    )


def held_writer(
    path: Path, **options: int
) -> tuple[SqliteWriter, sqlite3.Connection, threading.Event]:
    """A writer (not started) with a zero busy timeout, and the connection that will
    hold its database: once the holder's ``BEGIN IMMEDIATE`` makes a write fail, the
    writer thread's pause waits for the event (set by the test once the event loop has
    run meanwhile), then releases the holder, and the retry succeeds."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    loop_ran = threading.Event()

    def release_when_the_loop_has_run(seconds: float) -> None:
        assert loop_ran.wait(timeout=30), "the event loop was blocked by the locked write"
        holder.execute("ROLLBACK")

    writer = SqliteWriter(
        lambda: connect_and_migrate(path, "NORMAL"),
        name=str(path),
        busy_timeout_ms=0,
        pause=release_when_the_loop_has_run,
        **options,
    )
    return writer, holder, loop_ran


async def test_a_locked_database_is_retried_until_it_is_free(tmp_path: Path) -> None:
    """SQLITE_BUSY past the busy timeout is retried after a pause, and then succeeds."""
    path, pauses = tmp_path / "locked.db", list[float]()
    # The holder is released from the writer's thread, during the writer's pause.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def release_holder(seconds: float) -> None:
        pauses.append(seconds)
        holder.execute("ROLLBACK")

    writer = impatient_writer(path, pauses)
    writer._pause = release_holder
    await writer.start()
    try:
        holder.execute("BEGIN IMMEDIATE")
        assert await writer.submit(lambda c: c.execute("SELECT 42").fetchone()[0]) == 42
        assert len(pauses) == 1
    finally:
        holder.close()
        await writer.stop()


async def test_a_database_locked_for_too_long_fails_clearly(tmp_path: Path) -> None:
    """After the retries, the caller gets a StoreError saying the file stayed locked."""
    path, pauses = tmp_path / "locked.db", list[float]()
    writer = impatient_writer(path, pauses)
    await writer.start()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="stayed locked") as caught:
            await writer.submit(lambda c: c.execute("DELETE FROM executors"))
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert pauses == [0.05, 0.1, 0.2]
        holder.execute("ROLLBACK")
        await writer.submit(lambda c: c.execute("DELETE FROM executors"))
    finally:
        holder.close()
        await writer.stop()


async def test_writes_commit_on_the_event_loop_thread_when_the_file_is_free(
    tmp_path: Path,
) -> None:
    """The fast path: no thread hop when nobody else holds the database."""
    writer = SqliteWriter(lambda: connect_and_migrate(tmp_path / "f.db", "NORMAL"), name="f")
    await writer.start()
    try:
        ran_on = await writer.submit(lambda c: threading.get_ident())
        assert ran_on == threading.get_ident()
    finally:
        await writer.stop()


@pytest.mark.parametrize("one_statement", [False, True])
async def test_a_locked_database_never_blocks_the_event_loop(
    tmp_path: Path, one_statement: bool
) -> None:
    """While another connection holds the lock, the write waits on the writer thread
    and the loop keeps running other tasks; the write commits once the lock is free
    (a one-statement write too, which alone would run in autocommit on the loop)."""
    writer, holder, loop_ran = held_writer(tmp_path / "locked.db")
    threads: list[int] = []
    await writer.start()
    try:
        holder.execute("BEGIN IMMEDIATE")

        def work(connection: sqlite3.Connection) -> int:
            threads.append(threading.get_ident())
            return connection.execute("DELETE FROM executors").rowcount

        write = asyncio.ensure_future(writer.submit(work, one_statement=one_statement))
        for _ in range(3):
            await asyncio.sleep(0)  # yield: the loop-side attempt fails fast, not blocks
        assert not write.done()
        loop_ran.set()
        assert await write == 0
        assert threads and threads[-1] != threading.get_ident()
    finally:
        holder.close()
        await writer.stop()


# -- writes that come one at a time ----------------------------------------------------


async def test_a_write_that_comes_alone_commits_without_waiting_for_the_loop(
    idle_store: SqliteStore,
) -> None:
    """A sequential workflow's checkpoint: committed in its caller's step (the submitting
    coroutine finishes without suspending), as one autocommit INSERT."""
    fence = await claimed(idle_store)
    statements = statements_of(idle_store)
    before = counters(idle_store.writer)
    coroutine = idle_store.record_operation(fence, operation(fence.workflow_id))
    with pytest.raises(StopIteration):  # finished at its first step: it never waited
        coroutine.send(None)
    assert statements == ["INSERT"]  # no BEGIN, no COMMIT: the statement commits itself
    assert counters(idle_store.writer) == (before[0] + 1, before[1] + 1)
    assert 0 in (await idle_store.load_history(fence.workflow_id)).operations


WRITE_KINDS = {
    "any": {},
    "one statement": {"one_statement": True},
    "one statement, then reads": {"one_statement": True, "reads_after": True},
}


@pytest.mark.parametrize(
    ("kind", "alone", "batched"),
    [
        ("any", ["BEGIN", "DELETE", "COMMIT"], ["SAVEPOINT", "DELETE", "RELEASE"]),
        ("one statement", ["DELETE"], ["DELETE"]),
        ("one statement, then reads", ["BEGIN", "DELETE", "COMMIT"], ["DELETE"]),
    ],
)
async def test_each_kind_of_write_gets_the_transaction_and_savepoint_it_needs(
    idle_store: SqliteStore, kind: str, alone: list[str], batched: list[str]
) -> None:
    """Alone, a write runs in a transaction, unless it is one statement read by nothing
    after it (autocommit); in a batch, it runs in a savepoint, unless it is one
    statement (SQLite undoes a failed statement by itself)."""
    writer = idle_store.writer
    await writer.submit(lambda connection: None)  # the loop sets its busy timeout first
    statements = statements_of(idle_store)
    in_transaction: list[bool] = []

    def work(connection: sqlite3.Connection) -> int:
        changed = connection.execute("DELETE FROM executors").rowcount
        in_transaction.append(connection.in_transaction)
        return changed

    assert await writer.submit(work, **WRITE_KINDS[kind]) == 0
    assert statements == alone
    assert in_transaction == [alone != ["DELETE"]]
    statements.clear()
    writer.max_writes_without_yield = 0  # the next writes wait for the loop: one batch
    assert await asyncio.gather(*(writer.submit(work, **WRITE_KINDS[kind]) for _ in range(2)))
    assert statements == ["BEGIN", *batched, *batched, "COMMIT"]


async def test_a_caller_writing_in_a_tight_loop_still_lets_the_loop_run(
    idle_store: SqliteStore,
) -> None:
    """Of every max_writes_without_yield + 1 writes in a row, the first ones commit in
    their caller's step and the last waits for the loop, where other callbacks run."""
    fence = await claimed(idle_store)
    limit = idle_store.writer.max_writes_without_yield
    loop = asyncio.get_running_loop()
    written = 0
    ran_after: list[int] = []  # how many writes were done each time the callback ran

    def callback() -> None:  # runs at every turn of the loop (once per turn)
        if not ran_after or ran_after[-1] != written:
            ran_after.append(written)
        if len(ran_after) < 3:
            loop.call_soon(callback)

    loop.call_soon(callback)
    while len(ran_after) < 3 and written < 10 * (limit + 1):
        await idle_store.record_operation(fence, operation(fence.workflow_id, seq=written))
        written += 1
    assert 1 <= ran_after[0] <= limit + 1
    assert [ran_after[1] - ran_after[0], ran_after[2] - ran_after[1]] == [limit + 1] * 2
    assert len((await idle_store.load_history(fence.workflow_id)).operations) == written


# -- how a caller waits for its batch --------------------------------------------------


async def test_a_batched_write_waits_for_its_commit_without_a_future(
    store: SqliteStore,
) -> None:
    """A caller whose write joins a batch yields to the loop once; the batch's commit
    runs before it resumes, and it returns the write's value without a future."""
    writer = store.writer
    results = [asyncio.ensure_future(writer.submit(lambda c, n=n: n)) for n in range(3)]
    await queued(3, writer)  # each caller has submitted and yielded once
    writes = list(writer._pending)
    assert not any(result.done() for result in results)
    await asyncio.sleep(0)  # one turn: the flush, then the three callers, which return
    assert [result.result() for result in results] == [0, 1, 2]
    assert [write.future for write in writes] == [None] * 3


async def test_a_batch_found_locked_is_committed_by_the_thread_for_its_callers(
    tmp_path: Path,
) -> None:
    """Writes batched on the loop whose database another connection holds: the batch
    goes to the writer thread, each caller waits for its own outcome there (a value, or
    its own error), and the loop keeps running meanwhile."""
    writer, holder, loop_ran = held_writer(tmp_path / "locked.db", max_writes_without_yield=0)
    await writer.start()
    try:
        holder.execute("BEGIN IMMEDIATE")

        def fails(connection: sqlite3.Connection) -> int:
            raise ValueError("this write only")

        writes = [
            asyncio.ensure_future(writer.submit(lambda c: threading.get_ident())),
            asyncio.ensure_future(writer.submit(fails)),
            asyncio.ensure_future(writer.submit(lambda c: c.execute("SELECT 7").fetchone()[0])),
        ]
        for _ in range(3):
            await asyncio.sleep(0)
        assert not any(write.done() for write in writes)
        loop_ran.set()
        done = await asyncio.gather(*writes, return_exceptions=True)
        assert done[0] != threading.get_ident()  # committed by the writer thread
        assert isinstance(done[1], ValueError) and str(done[1]) == "this write only"
        assert done[2] == 7
    finally:
        holder.close()
        await writer.stop()


async def test_callers_on_two_event_loops_each_get_their_own_outcome(
    store: SqliteStore,
) -> None:
    """A writer shared by two event loops (two threads): a batch flushed on one loop
    may hold the other's writes, whose callers then wait on a future; every caller
    gets its own value and every write commits once."""
    writer = store.writer
    fences = [await claimed(store, f"w-{index:03}") for index in range(80)]
    ours, theirs = fences[:40], fences[40:]
    before = counters(writer)

    async def write_all(batch: list[Fence]) -> list[None]:
        return await asyncio.gather(
            *(store.record_operation(fence, operation(fence.workflow_id)) for fence in batch)
        )

    other = threading.Thread(target=lambda: asyncio.run(write_all(theirs)))
    other.start()
    await write_all(ours)
    await asyncio.to_thread(other.join)
    assert counters(writer)[1] - before[1] == 80
    for fence in fences:
        assert list((await store.load_history(fence.workflow_id)).operations) == [0]


async def test_a_cancelled_caller_does_not_withdraw_its_batched_write(
    store: SqliteStore,
) -> None:
    """Cancelled after it submitted, the caller gets CancelledError; its write, already
    in the batch, still commits."""
    fence = await claimed(store)
    write = asyncio.ensure_future(store.record_operation(fence, operation(fence.workflow_id)))
    await queued(1, store.writer)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    assert 0 in (await store.load_history(fence.workflow_id)).operations

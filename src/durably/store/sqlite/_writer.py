"""The single writer of a SQLite store, with group commit.

A write is a function of the connection, submitted from the event loop. Writes
submitted while the loop is busy are collected and, once per loop iteration, run in
ONE ``BEGIN IMMEDIATE`` transaction, each inside its own SAVEPOINT, so that a write
that raises (a stale fence, say) rolls back only itself. The batch commits once, one
fsync for all of it, and only then does each caller go on: every write still waits
for its own durability, yet a thousand concurrent steps cost a handful of commits
instead of a thousand.

A caller of a batched write waits without a future: it yields to the loop once, as
``asyncio.sleep(0)`` does but without its two calls (:func:`_next_iteration`). The
loop runs its callbacks in the order they were scheduled, and the batch's commit was
scheduled before the caller yielded, so when the caller runs again its write's
outcome is there to take. A future is made only for a write that the loop did not
commit (the database was locked and the writer thread took the batch, or another
event loop's flush holds it). Per write of 100 concurrent writers (``python -m
bench.instructions --only writer-sqlite``, two counts agreeing to 0.01%): 74,534
instructions with a future each, 72,122 with this yield, 75,646 with
``asyncio.sleep(0)`` instead of it.

When writes come one at a time (the last batch held one, and none is waiting), a
write is committed at once, in its caller's step: waiting for the next loop
iteration would only add latency, since no other write would join it. After
:data:`MAX_WRITES_WITHOUT_YIELD` such writes in a row, the next one waits for the
loop again, so that a caller writing in a tight loop still lets other tasks run.

A write that changes the database in one statement (a step's checkpoint) needs no
transaction of its own when it is alone: it runs in autocommit mode, one
``execute`` instead of three; in a batch it needs no savepoint, because SQLite
undoes a failed statement by itself. One that then reads the row it changed (a
status change) needs no savepoint either, but alone it still runs in a transaction,
so that its read sees its own change and nothing newer.

The batch is committed on the event-loop thread, because handing it to a thread
costs more than the commit itself (measured on a 2-core VM: about 180 µs for the
round trip against about 20 µs for a WAL commit with ``synchronous=NORMAL``). The
loop never waits for a lock, though: when another connection holds the database,
the loop-side attempt fails at once (busy timeout 0) and the batch goes to the
writer thread, which waits the busy timeout and retries a few times with a growing
pause. Only if that fails too does every write of the batch get a
:class:`~durably.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from durably.errors import StoreError

T = TypeVar("T")

#: The most writes committed in one transaction (bounds the latency of the last one).
MAX_BATCH = 512
#: How long the writer thread waits for another connection's lock, per attempt.
BUSY_TIMEOUT_MS = 5000
#: Writes committed in their caller's step, in a row, before one waits for the loop.
MAX_WRITES_WITHOUT_YIELD = 16
#: Retries of a transaction refused because another connection holds the lock.
BUSY_RETRIES = 4
#: Pause before the first retry, in seconds; it doubles at each retry.
BUSY_PAUSE = 0.05

_SAVEPOINT = "durably_write"
#: What :meth:`SqliteWriter._autocommit_on_loop` returns when the database is locked.
_LOCKED: Any = object()


@dataclass(slots=True)
class _Write:
    work: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    #: What its caller awaits, if it awaits one (see the module's docstring): its
    #: result is ``outcome``. Set on the caller's loop, under ``_DELIVERY`` where
    #: another thread may deliver.
    future: asyncio.Future[_Outcome] | None
    #: Needs no savepoint in a batch (see :meth:`SqliteWriter.submit`).
    one_statement: bool = False
    #: Alone, committed in autocommit mode rather than in a transaction.
    autocommits: bool = False
    #: Its outcome, once delivered (see :func:`_deliver`).
    outcome: _Outcome | None = None


@dataclass(slots=True)
class _Stop:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


class _TransactionFailed(Exception):
    """The batch's transaction failed as a whole; carried to every caller of the batch."""

    def __init__(self, cause: sqlite3.Error, attempts: int) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.attempts = attempts


def is_busy(error: sqlite3.Error) -> bool:
    """Whether ``error`` means another connection holds a lock we need."""
    return error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteWriter:
    """Owns the write connection and the thread that uses it.

    Args:
        connect: Opens the connection; called on the writer thread.
        name: The database, for error messages.
        max_batch: The most writes per transaction.
        busy_retries: How many times a locked transaction is retried.
        busy_timeout_ms: How long the writer thread lets SQLite wait for a lock.
        pause: Sleeps between busy retries (a test can replace it).
        max_writes_without_yield: How many writes in a row may be committed in their
            caller's step (0: every write waits for the loop's next iteration).
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        name: str,
        max_batch: int = MAX_BATCH,
        busy_retries: int = BUSY_RETRIES,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        pause: Callable[[float], None] = time.sleep,
        max_writes_without_yield: int = MAX_WRITES_WITHOUT_YIELD,
    ) -> None:
        self._connect = connect
        self._name = name
        self._max_batch = max_batch
        self._busy_retries = busy_retries
        self._pause = pause
        self._busy_timeout = busy_timeout_ms
        self.max_writes_without_yield = max_writes_without_yield
        self._queue: queue.SimpleQueue[_Write | _Stop] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None
        #: Held by whoever uses the connection: the loop's flush or the thread.
        self._lock = threading.Lock()
        self._pending: list[_Write] = []
        self._flush_scheduled = False
        #: The size of the last batch, and how many writes in a row were committed in
        #: their caller's step (see the module's docstring).
        self._last_batch = 0
        self._writes_without_yield = 0
        self._busy_timeout_ms: int | None = None
        #: Transactions committed, and writes that succeeded in them (group commit
        #: shows as fewer transactions than writes).
        self.committed_transactions = 0
        self.committed_writes = 0

    @property
    def is_running(self) -> bool:
        """Whether the thread accepts writes."""
        return self._thread is not None

    async def start(self) -> None:
        """Start the thread and wait until it has opened its connection.

        Raises:
            SchemaVersionError: the database is newer than this code.
            StoreError: the connection could not be opened.
        """
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(loop, opened), name="durably-sqlite-writer", daemon=True
        )
        thread.start()
        try:
            await opened
        except (sqlite3.Error, OSError) as error:
            thread.join()  # it ends right after reporting the failure
            raise StoreError(f"cannot open SQLite database {self._name}: {error}") from error
        except asyncio.CancelledError:
            self._queue.put(_Stop(loop, loop.create_future()))
            raise
        except BaseException:
            thread.join()
            raise
        self._thread = thread

    async def stop(self) -> None:
        """Commit the writes already queued, close the connection and end the thread."""
        thread = self._thread
        if thread is None:
            return
        self._flush()  # writes submitted but not yet flushed go before the stop
        self._thread = None
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Stop(loop, stopped))
        await stopped
        thread.join()  # resolving `stopped` is the thread's last act, so this is brief

    async def submit(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        one_statement: bool = False,
        reads_after: bool = False,
    ) -> T:
        """Run ``work(connection)`` in the next group-committed transaction and return
        its result once that transaction has committed.

        ``work`` must only use the connection (it is run again if the transaction is
        retried) and must not begin or end transactions. An exception it raises
        undoes its own changes and reaches this caller, leaving the batch intact.
        Cancelling the caller does not withdraw a write already queued.

        Args:
            work: The write.
            one_statement: ``work`` changes the database with one statement at most,
                and runs nothing after it but reads that cannot fail it (a fenced
                upsert that checks its row count, say): alone, it is committed in
                autocommit mode; in a batch, without a savepoint.
            reads_after: with ``one_statement``, ``work`` then reads what must be
                read in the same transaction as its statement (the row it changed):
                alone, it runs in a transaction, not in autocommit mode.

        Raises:
            StoreError: the store is closed, or SQLite failed (the cause is attached).
        """
        if self._thread is None:
            raise StoreError(f"the SQLite store {self._name} is not open; await store.open() first")
        autocommits = one_statement and not reads_after
        alone = self._may_commit_now()
        if alone:
            self._writes_without_yield += 1
            self._last_batch = 1
            if autocommits:
                committed: T = self._autocommit_on_loop(work)
                if committed is not _LOCKED:
                    return committed
        loop = asyncio.get_running_loop()
        write = _Write(work, loop, None, one_statement, autocommits)
        if alone:
            # An autocommit write here found the database locked: no second try.
            outcomes = None if autocommits else self._commit_on_loop([write])
            if outcomes is None:
                self._queue.put(write)  # the database is locked: the thread waits for it
            elif outcomes[0].error is None:
                committed = outcomes[0].value
                return committed  # committed: no need for a future
            else:
                write.outcome = outcomes[0]  # raised below, as the thread's
        else:
            self._writes_without_yield = 0
            self._pending.append(write)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
            await _next_iteration()  # the flush, scheduled before, runs first
        try:
            outcome = write.outcome
            if outcome is None:
                outcome = await _outcome_of(write)
            if outcome.error is not None:
                raise outcome.error
            # Typed by assignment (value is Any), not with typing.cast: a call less
            # per write.
            value: T = outcome.value
            return value
        except _TransactionFailed as failed:
            raise self._transaction_error(failed) from failed.cause
        except sqlite3.Error as error:
            raise StoreError(f"SQLite write to {self._name} failed: {error}") from error

    def _may_commit_now(self) -> bool:
        """Whether a new write is committed in its caller's step (see the module's
        docstring): writes have been coming one at a time, none is waiting, and the
        caller has not gone too long without yielding to the loop."""
        return (
            self._last_batch <= 1
            and not self._pending
            and self._writes_without_yield < self.max_writes_without_yield
            and self._queue.empty()
        )

    def _flush(self) -> None:
        """Commit every pending write in one transaction, on the loop thread, unless
        the database is locked: then the writer thread takes the batch."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        running = asyncio.get_running_loop()
        while pending:
            batch, pending = pending[: self._max_batch], pending[self._max_batch :]
            self._last_batch = len(batch)
            outcomes = self._commit_on_loop(batch)
            if outcomes is None:
                for write in batch:
                    self._queue.put(write)
                continue
            for write, outcome in zip(batch, outcomes, strict=True):
                if write.loop is running and write.future is None:
                    # Its caller runs on this thread, after this flush, and takes it.
                    write.outcome = outcome
                else:
                    _deliver(write, outcome)

    def _commit_on_loop(self, batch: list[_Write]) -> list[_Outcome] | None:
        """Commit ``batch`` on the loop's thread and return each write's outcome, or
        None when another connection holds the database (the thread must wait)."""
        connection = self._take_on_loop()
        if connection is None:
            return None
        try:
            try:
                outcomes = self._transaction(connection, batch)
            except sqlite3.Error as error:
                if is_busy(error):
                    return None
                failed = _TransactionFailed(error, 1)
                return [_Outcome(error=failed) for _ in batch]
            except Exception as error:  # a bug of ours: tell the callers rather than hang them
                return [_Outcome(error=_internal_error(error)) for _ in batch]
            self._count(outcomes)
            return outcomes
        finally:
            self._lock.release()

    def _autocommit_on_loop(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a lone one-statement write in autocommit mode on the loop's thread and
        return its result, or :data:`_LOCKED` when another connection holds the database
        (the thread must wait). The hot path of sequential steps: no future, no batch.

        Raises:
            StoreError: SQLite failed.
            Exception: what ``work`` raised (a stale fence, say).
        """
        connection = self._take_on_loop()
        if connection is None:
            return _LOCKED
        try:
            try:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")  # left open by a failed ROLLBACK
                value = work(connection)
            except sqlite3.Error as error:
                if is_busy(error):
                    return _LOCKED
                raise self._transaction_error(_TransactionFailed(error, 1)) from error
            self.committed_transactions += 1
            self.committed_writes += 1
            return value
        finally:
            self._lock.release()

    def _take_on_loop(self) -> sqlite3.Connection | None:
        """The connection, its lock taken and its busy timeout 0 (the loop never waits
        for another connection), or None when the thread or another connection holds
        it. The caller releases ``self._lock``."""
        connection = self._connection
        if connection is None or not self._lock.acquire(blocking=False):
            return None
        try:
            if self._busy_timeout_ms != 0:
                self._set_busy_timeout(connection, 0)
        except BaseException:
            self._lock.release()
            raise
        return connection

    def _set_busy_timeout(self, connection: sqlite3.Connection, milliseconds: int) -> None:
        if self._busy_timeout_ms != milliseconds:
            # Pragmas take no parameters; the value is an int we chose.
            connection.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
            self._busy_timeout_ms = milliseconds

    def _count(self, outcomes: list[_Outcome]) -> None:
        succeeded = 0
        for outcome in outcomes:
            if outcome.error is None:
                succeeded += 1
        if succeeded:  # a lone failed write was rolled back: nothing was committed
            self.committed_transactions += 1
            self.committed_writes += succeeded

    def _transaction_error(self, failed: _TransactionFailed) -> StoreError:
        if is_busy(failed.cause):
            return StoreError(
                f"SQLite database {self._name} stayed locked by another connection "
                f"through {failed.attempts} attempts, each waiting the busy timeout; "
                f"nothing was written. Is another program holding a long transaction on it?"
            )
        return StoreError(
            f"SQLite transaction on {self._name} failed, so none of its "
            f"writes were committed: {failed.cause}"
        )

    # -- the thread --------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        try:
            connection = self._connect()
        except BaseException as error:
            # Every failure to open is the opener's to see, whatever its type.
            _settle(loop, opened, _Outcome(error=error))
            return
        self._connection = connection
        self._busy_timeout_ms = None  # as the connection was opened
        _settle(loop, opened, _Outcome())
        stop: _Stop | None = None
        try:
            stop = self._serve(connection)
        finally:
            with self._lock:
                self._connection = None
                connection.close()
            self._fail_leftovers()
            if stop is not None:
                _settle(stop.loop, stop.future, _Outcome())

    def _serve(self, connection: sqlite3.Connection) -> _Stop:
        while True:
            first = self._queue.get()
            if isinstance(first, _Stop):
                return first
            batch = [first]
            stop: _Stop | None = None
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stop = item
                    break
                batch.append(item)
            self._commit(connection, batch)
            if stop is not None:
                return stop

    def _commit(self, connection: sqlite3.Connection, batch: list[_Write]) -> None:
        with self._lock:
            self._set_busy_timeout(connection, self._busy_timeout)
            self._commit_waiting(connection, batch)

    def _commit_waiting(self, connection: sqlite3.Connection, batch: list[_Write]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                outcomes = self._transaction(connection, batch)
            except sqlite3.Error as error:
                if is_busy(error) and attempt <= self._busy_retries:
                    self._pause(BUSY_PAUSE * 2 ** (attempt - 1))
                    continue
                for write in batch:
                    _deliver(write, _Outcome(error=_TransactionFailed(error, attempt)))
                return
            except Exception as error:  # a bug of ours: tell the callers rather than hang them
                for write in batch:
                    _deliver(write, _Outcome(error=_internal_error(error)))
                return
            break
        self._count(outcomes)
        for write, outcome in zip(batch, outcomes, strict=True):
            _deliver(write, outcome)

    def _transaction(self, connection: sqlite3.Connection, batch: list[_Write]) -> list[_Outcome]:
        if connection.in_transaction:
            # Left open by a failed ROLLBACK: end it rather than fail every later batch.
            connection.execute("ROLLBACK")
        if len(batch) == 1 and batch[0].autocommits:
            # Autocommit: the statement is its own transaction, committed or undone.
            return [self._run_bare(connection, batch[0])]
        connection.execute("BEGIN IMMEDIATE")
        try:
            if len(batch) == 1:
                outcome = self._run_bare(connection, batch[0])
                if outcome.error is not None:
                    connection.execute("ROLLBACK")
                    return [outcome]
                outcomes = [outcome]
            else:
                outcomes = [
                    self._run_bare(connection, write)
                    if write.one_statement
                    else self._in_savepoint(connection, write)
                    for write in batch
                ]
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise
        return outcomes

    def _run_bare(self, connection: sqlite3.Connection, write: _Write) -> _Outcome:
        """Run a write without a savepoint: alone in its transaction (if it fails, the
        whole transaction is rolled back), or a single statement (SQLite undoes a
        failed statement by itself). Errors that concern the transaction are raised."""
        try:
            return _Outcome(write.work(connection))
        except Exception as error:
            if _concerns_transaction(connection, error):
                raise
            return _Outcome(error=error)

    def _in_savepoint(self, connection: sqlite3.Connection, write: _Write) -> _Outcome:
        """Run a write of a batch inside its own savepoint, so that if it fails, it
        undoes only itself. Errors that concern the transaction are raised."""
        connection.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            value = write.work(connection)
        except Exception as error:
            if _concerns_transaction(connection, error):
                raise
            connection.execute(f"ROLLBACK TO {_SAVEPOINT}")
            connection.execute(f"RELEASE {_SAVEPOINT}")
            return _Outcome(error=error)
        connection.execute(f"RELEASE {_SAVEPOINT}")
        return _Outcome(value=value)

    def _fail_leftovers(self) -> None:
        """Fail writes queued after the stop (from another thread racing close())."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Write):
                closed = StoreError(f"the SQLite store {self._name} was closed")
                _deliver(item, _Outcome(error=closed))
            else:
                _settle(item.loop, item.future, _Outcome())


def _concerns_transaction(connection: sqlite3.Connection, error: Exception) -> bool:
    """Whether a write's ``error`` lost the whole transaction (SQLite rolled it back, or
    it must be retried because the database is locked): it concerns the batch, not
    the one write that raised it."""
    return isinstance(error, sqlite3.Error) and (is_busy(error) or not connection.in_transaction)


def _internal_error(error: Exception) -> StoreError:
    wrapped = StoreError(f"internal error in the SQLite writer: {error!r}")
    wrapped.__cause__ = error
    return wrapped


#: Guards a write's ``outcome`` and ``future`` where its caller's thread and the thread
#: that commits it may meet: whichever comes second sees what the first did.
_DELIVERY = threading.Lock()


@types.coroutine
def _next_iteration() -> Generator[None, None, None]:
    """Yield to the event loop once, as ``asyncio.sleep(0)`` does (a bare ``yield``
    that the task answers by scheduling itself again), without its two calls: the task
    runs again after every callback scheduled before it."""
    yield


async def _outcome_of(write: _Write) -> _Outcome:
    """The outcome of ``write``, which its caller's loop did not commit: awaited on a
    future unless it came meanwhile. Called by its caller, on its loop."""
    with _DELIVERY:
        if write.outcome is not None:
            return write.outcome
        future: asyncio.Future[_Outcome] = write.loop.create_future()
        write.future = future
    return await future


def _deliver(write: _Write, outcome: _Outcome) -> None:
    """Give ``write`` its outcome, from any thread: through the future its caller
    awaits, if it awaits one (the future's result is the outcome), else for its caller
    to take when it runs again."""
    with _DELIVERY:
        write.outcome = outcome
        future = write.future
    if future is not None:
        _settle(write.loop, future, _Outcome(value=outcome))


def _resolve(future: asyncio.Future[Any], outcome: _Outcome) -> None:
    """Resolve ``future`` with ``outcome``; call it on the future's loop."""
    if future.done():  # the caller was cancelled
        return
    if outcome.error is None:
        future.set_result(outcome.value)
    else:
        future.set_exception(outcome.error)


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], outcome: _Outcome
) -> None:
    """Resolve ``future`` on its own loop, from any thread (futures are not
    thread-safe)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # committed on the loop itself: no need to go round it again
        _resolve(future, outcome)
        return
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        loop.call_soon_threadsafe(_resolve, future, outcome)

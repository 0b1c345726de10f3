"""The single writer thread of a SQLite store, with group commit.

Every write is a function of the connection. The thread takes the first queued write
and every other write already queued, runs them in ONE ``BEGIN IMMEDIATE``
transaction (each inside its own SAVEPOINT, so one failing write rolls back only
itself) and commits once: one fsync for the whole batch. Each caller's future is
resolved on its own event loop after the commit, so every write still waits for its
own durability.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from durably.errors import StoreError

T = TypeVar("T")
MAX_BATCH = 512
BUSY_RETRIES = 5


@dataclass(slots=True)
class _Write:
    work: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class SqliteWriter:
    """Owns the write connection and its thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        #: Committed transactions and writes, for tests and benchmarks.
        self.transactions = 0
        self.writes = 0

    def start(self) -> None:
        """Start the thread (it opens the connection)."""
        self._thread = threading.Thread(target=self._run, name="durably-sqlite-writer", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._startup_error is not None:
            raise StoreError(f"cannot open the SQLite database: {self._startup_error}") from (
                self._startup_error
            )

    def stop(self) -> None:
        """Finish queued writes, close the connection and join the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    async def submit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in the next group-committed transaction and return its result."""
        if self._thread is None:
            raise StoreError("the SQLite store is closed; open it first")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Write(work, loop, future))
        return await future

    def _run(self) -> None:
        try:
            connection = self._connect()
        except BaseException as error:
            self._startup_error = error
            self._started.set()
            return
        self._started.set()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stopping = False
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(connection, batch)
                if stopping:
                    return
        finally:
            connection.close()

    def _commit(self, connection: sqlite3.Connection, batch: list[_Write]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        for retry in range(BUSY_RETRIES + 1):
            try:
                connection.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as error:
                if (
                    "locked" not in str(error) and "busy" not in str(error)
                ) or retry == BUSY_RETRIES:
                    self._fail_all(batch, error)
                    return
                time.sleep(0.01 * 2**retry)
        try:
            for write in batch:
                connection.execute("SAVEPOINT write")
                try:
                    result = write.work(connection)
                except BaseException as error:
                    connection.execute("ROLLBACK TO write")
                    connection.execute("RELEASE write")
                    outcomes.append((False, error))
                else:
                    connection.execute("RELEASE write")
                    outcomes.append((True, result))
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            self._fail_all(batch, error)
            return
        self.transactions += 1
        self.writes += len(batch)
        for write, (succeeded, value) in zip(batch, outcomes, strict=True):
            _deliver(write, succeeded, value)

    def _fail_all(self, batch: list[_Write], error: sqlite3.Error) -> None:
        wrapped = StoreError(f"SQLite write failed: {error}")
        wrapped.__cause__ = error
        for write in batch:
            _deliver(write, False, wrapped)


def _deliver(write: _Write, succeeded: bool, value: Any) -> None:
    def resolve() -> None:
        if write.future.done():
            return
        if succeeded:
            write.future.set_result(value)
        elif isinstance(value, sqlite3.Error):
            wrapped = StoreError(f"SQLite write failed: {value}")
            wrapped.__cause__ = value
            write.future.set_exception(wrapped)
        else:
            write.future.set_exception(value)

    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
        write.loop.call_soon_threadsafe(resolve)

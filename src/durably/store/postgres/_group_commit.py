"""Group commit of fenced writes on PostgreSQL: checkpoints and final statuses.

Every step ends with one fenced write, and every workflow with one more (its final
status). Written one statement per transaction, 100 concurrent workflows cost 100
commits (each a WAL flush) and hold 100 pooled connections; the pool, not the
database, becomes the limit. Instead, writes submitted while a batch is in flight
wait for it, then go together: ONE transaction, the one statement, one commit (so a
worker stopped in the middle never leaves a transaction open with rows locked). Each
caller still waits for the commit of its own write and learns its own outcome (a
stale fence refuses only that write: the fenced statement simply skips it, which
aborts nothing). Two writes of the same row (a checkpoint's workflow and seq, a
status's workflow) never share a batch: the later one goes in the next.

A lone write (a sequential workflow) takes the plain single-statement path, so it pays
no transaction round trips. When a batch fails for a reason other than a lost
connection (which the store's retries already handle), its writes are run again one by
one, so that a write the server refuses fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from durably.errors import StoreError

Params = dict[str, Any]
R = TypeVar("R")

#: The most writes per transaction (bounds the latency of the last one).
MAX_BATCH = 256


@dataclass(slots=True)
class _Write(Generic[R]):
    params: Params
    future: asyncio.Future[R]


class GroupCommitter(Generic[R]):
    """Batches fenced writes into shared transactions.

    Args:
        write_one: Runs one write in its own transaction and returns its outcome
            (whether the fence held, the changed row...).
        write_many: Runs writes in one transaction; the outcome of each, in order.
        key: What identifies the row a write changes (at most once per batch).
        max_batch: The most writes per transaction.
    """

    def __init__(
        self,
        write_one: Callable[[Params], Awaitable[R]],
        write_many: Callable[[list[Params]], Awaitable[list[R]]],
        *,
        key: Callable[[Params], Hashable],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self._key = key
        self._max_batch = max_batch
        self._pending: list[_Write[R]] = []
        self._drainer: asyncio.Task[None] | None = None
        #: Transactions committed and writes they carried (for tests and benchmarks).
        self.transactions = 0
        self.writes = 0

    async def submit(self, params: Params) -> R:
        """Write ``params`` in the next batch; return its outcome once the batch has
        committed. Cancelling the caller does not withdraw the write.

        Raises:
            StoreError: the write failed.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(params, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name="durably-pg-group-commit")
        return await asyncio.shield(future)

    async def flush(self) -> None:
        """Wait until every write submitted so far has been committed (or failed)."""
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._commit(self._next_batch())
        finally:
            self._drainer = None

    def _next_batch(self) -> list[_Write[R]]:
        batch: list[_Write[R]] = []
        keys: set[Hashable] = set()
        later: list[_Write[R]] = []
        for write in self._pending:
            key = self._key(write.params)
            if key in keys or len(batch) == self._max_batch:
                later.append(write)
            else:
                keys.add(key)
                batch.append(write)
        self._pending = later
        return batch

    async def _commit(self, batch: list[_Write[R]]) -> None:
        if len(batch) == 1:
            await self._settle_one(batch[0])
            return
        try:
            outcomes = await self._write_many([write.params for write in batch])
        except StoreError:
            # One write the server refuses must not fail the others: retry alone.
            for write in batch:
                await self._settle_one(write)
            return
        except BaseException as error:
            _fail(batch, error)
            raise
        self.transactions += 1
        self.writes += len(batch)
        for write, outcome in zip(batch, outcomes, strict=True):
            if not write.future.done():
                write.future.set_result(outcome)

    async def _settle_one(self, write: _Write[R]) -> None:
        try:
            outcome = await self._write_one(write.params)
        except Exception as error:
            if not write.future.done():
                write.future.set_exception(error)
            return
        except BaseException as error:
            _fail([write], error)
            raise
        self.transactions += 1
        self.writes += 1
        if not write.future.done():
            write.future.set_result(outcome)


def _fail(batch: list[_Write[Any]], error: BaseException) -> None:
    """The drainer itself was stopped: its writes' outcome is unknown to their callers."""
    for write in batch:
        if not write.future.done():
            write.future.set_exception(
                StoreError(f"the write was interrupted before its outcome was known: {error!r}")
            )

"""Debounced recovery requests: many requests, one recovery pass; each pass's report
published to every subscriber.

A request opens a window of ``debounce`` on the app's clock; the requests made until
the window ends join it, and one recovery pass runs at its end. A request made while a
pass runs opens a new window after it (the pass may have looked before the change
that prompted the request). Requests may come from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from durably.clock import Clock
from durably.errors import AppClosedError

logger = logging.getLogger("durably.recovery")

R = TypeVar("R")


class _End:
    """Marks the end of a report stream (the app closed)."""


_END = _End()


class RecoveryReports(Generic[R]):
    """An async iterator over the reports of the recovery passes that end after it
    was made; it ends when the app closes. Reports are buffered until read."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[R | _End] = asyncio.Queue()
        self._ended = False

    def __aiter__(self) -> RecoveryReports[R]:
        return self

    async def __anext__(self) -> R:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._ended = True
            raise StopAsyncIteration
        return item

    def _publish(self, item: R | _End) -> None:
        self._queue.put_nowait(item)


class RecoveryTrigger(Generic[R]):
    """Coalesces recovery requests into debounced passes.

    Args:
        clock: The app's clock (the window is measured on it).
        recover: Runs one recovery pass and returns its report.
        debounce: The window's length in microseconds.
    """

    def __init__(self, *, clock: Clock, recover: Callable[[], Awaitable[R]], debounce: int) -> None:
        if debounce < 0:
            raise ValueError(f"the recovery debounce must not be negative, got {debounce}us")
        self._clock = clock
        self._recover = recover
        self._debounce = debounce
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: int | None = None  # when the open window ends (None: no request)
        self._task: asyncio.Task[None] | None = None
        self._subscribers: weakref.WeakSet[RecoveryReports[R]] = weakref.WeakSet()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run passes on ``loop`` (the app's loop, once it is open)."""
        self._loop = loop

    def request(self) -> None:
        """Ask for a recovery pass; returns at once. Thread-safe.

        Raises:
            AppClosedError: the trigger is not bound to an open app.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            raise AppClosedError()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._request()
        else:
            loop.call_soon_threadsafe(self._request)

    def subscribe(self) -> RecoveryReports[R]:
        """A new stream of the reports of the passes that end from now on, until
        :meth:`close`."""
        stream: RecoveryReports[R] = RecoveryReports()
        self._subscribers.add(stream)
        return stream

    async def close(self) -> None:
        """Drop the pending request and end every stream."""
        self._loop = None
        self._due = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stream in list(self._subscribers):
            stream._publish(_END)
        self._subscribers.clear()

    def _request(self) -> None:
        if self._loop is None:
            return  # closed meanwhile
        if self._due is None:
            self._due = self._clock.now() + self._debounce
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self._due is not None:
                await self._clock.sleep_until(self._due)
                self._due = None  # later requests need a pass (and a window) of their own
                try:
                    report = await self._recover()
                except AppClosedError:
                    return
                except Exception:
                    logger.exception("a requested recovery pass failed")
                    continue
                for stream in list(self._subscribers):
                    stream._publish(report)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

"""The context of a plain ``def`` workflow: blocking calls into the async context.

A ``def`` workflow runs in a worker thread; each durable operation is executed by the
async :class:`~durably.context.Context` on the event loop, so there is one
implementation of every operation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from durably.composition import ChildHandle
from durably.context import Context
from durably.errors import _Abandon
from durably.fan_out import MapResult
from durably.queues import Queue
from durably.registry import StepDefinition
from durably.retry import RetryPolicy
from durably.step_call import enter_workflow_body

R = TypeVar("R")
T = TypeVar("T")


class SyncContext:
    """The context of a plain ``def`` workflow; same operations as
    :class:`~durably.context.Context`, blocking."""

    def __init__(self, context: Context, loop: asyncio.AbstractEventLoop) -> None:
        self._context = context
        self._loop = loop
        self._in_flight: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()

    @property
    def workflow_id(self) -> str:
        """The workflow's id."""
        return self._context.workflow_id

    @property
    def workflow_name(self) -> str:
        """The workflow's registered name."""
        return self._context.workflow_name

    @property
    def is_replaying(self) -> bool:
        """True while re-running recorded operations."""
        return self._context.is_replaying

    def step(
        self,
        name: str,
        fn: Callable[..., R],
        /,
        *args: Any,
        retry: RetryPolicy | None = None,
        compensate: Callable[..., Any] | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> R:
        """Run a durable step (see :meth:`Context.step`)."""
        context = self._context
        return self._call(
            lambda: context.step(
                name, fn, *args, retry=retry, compensate=compensate, timeout=timeout, **kwargs
            )
        )

    def call_step(
        self, definition: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a step declared with ``@app.step`` (used by the decorator)."""
        return self.step(
            definition.name,
            definition.fn,
            *args,
            retry=definition.retry,
            compensate=definition.compensate,
            timeout=definition.timeout,
            **kwargs,
        )

    def on_failure(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Register a compensation (see :meth:`Context.on_failure`)."""
        self._context.on_failure(fn, *args, name=name, retry=retry)

    def sleep(self, name: str, duration: timedelta | float) -> None:
        """Sleep durably (see :meth:`Context.sleep`)."""
        context = self._context
        self._call(lambda: context.sleep(name, duration))

    def wait_signal(
        self,
        name: str,
        *,
        timeout: timedelta | float | None = None,
        payload_type: object = Any,
    ) -> Any:
        """Wait for a signal (see :meth:`Context.wait_signal`)."""
        context = self._context
        return self._call(
            lambda: context.wait_signal(name, timeout=timeout, payload_type=payload_type)  # type: ignore[call-overload]
        )

    def now(self) -> datetime:
        """The current time, recorded."""
        return self._call(self._context.now)

    def random(self) -> float:
        """A random float in [0, 1), recorded."""
        return self._call(self._context.random)

    def uuid4(self) -> uuid.UUID:
        """A random UUID, recorded."""
        return self._call(self._context.uuid4)

    def patched(self, change_id: str) -> bool:
        """Whether this workflow takes the new code path of a change (see
        :meth:`Context.patched`)."""
        context = self._context
        return self._call(lambda: context.patched(change_id))

    def set_event(self, key: str, value: object) -> None:
        """Publish a value readable outside (see :meth:`Context.set_event`)."""
        context = self._context
        self._call(lambda: context.set_event(key, value))

    def write_stream(self, key: str, value: object) -> None:
        """Append an entry to a stream (see :meth:`Context.write_stream`)."""
        context = self._context
        self._call(lambda: context.write_stream(key, value))

    def close_stream(self, key: str) -> None:
        """End a stream (see :meth:`Context.close_stream`)."""
        context = self._context
        self._call(lambda: context.close_stream(key))

    def start_child(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        queue: Queue | str | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> SyncChildHandle[Any]:
        """Start a child workflow (see :meth:`Context.start_child`)."""
        context = self._context
        handle = self._call(
            lambda: context.start_child(
                workflow,
                *args,
                workflow_id=workflow_id,
                timeout=timeout,
                queue=queue,
                priority=priority,
                **kwargs,
            )
        )
        return SyncChildHandle(self, handle)

    def run_child(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        queue: Queue | str | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> Any:
        """Start a child workflow and wait for its result (see :meth:`Context.run_child`)."""
        context = self._context
        return self._call(
            lambda: context.run_child(
                workflow,
                *args,
                workflow_id=workflow_id,
                timeout=timeout,
                queue=queue,
                priority=priority,
                **kwargs,
            )
        )

    def map(
        self,
        fn: Callable[..., Any] | str,
        items: Iterable[Any],
        /,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
        min_successes: int | None = None,
        tolerated_failures: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> MapResult[Any]:
        """Run a step or child workflow for every item (see :meth:`Context.map`)."""
        context = self._context
        return self._call(
            lambda: context.map(
                fn,
                items,
                name=name,
                max_concurrency=max_concurrency,
                min_successes=min_successes,
                tolerated_failures=tolerated_failures,
                retry=retry,
                timeout=timeout,
            )
        )

    def _call(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        async def invoke() -> T:
            return await factory()

        future = asyncio.run_coroutine_threadsafe(invoke(), self._loop)
        with self._lock:
            self._in_flight = future
        try:
            return future.result()
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            interruption = self._context._deliver_interruption()
            raise interruption if interruption is not None else _Abandon("cancelled") from None
        finally:
            with self._lock:
                self._in_flight = None

    def cancel_in_flight(self) -> None:
        """Cancel the operation the body thread is blocked on (called from the loop)."""
        with self._lock:
            if self._in_flight is not None:
                self._in_flight.cancel()

    def run_body(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Run the workflow function in this (worker) thread."""
        enter_workflow_body(self)
        return fn(self, *args, **kwargs)


class SyncChildHandle(Generic[R]):
    """A child workflow started by :meth:`SyncContext.start_child` (see
    :class:`~durably.composition.ChildHandle`)."""

    def __init__(self, context: SyncContext, handle: ChildHandle[R]) -> None:
        self._context = context
        self._handle = handle
        self.workflow_id = handle.workflow_id
        self.workflow_name = handle.workflow_name

    def __repr__(self) -> str:
        return f"SyncChildHandle({self.workflow_id!r}, workflow={self.workflow_name!r})"

    def result(self) -> R:
        """Wait for the child to end and return its result (a durable operation)."""
        return self._context._call(self._handle.result)


async def run_sync_body(fn: Callable[..., Any], context: Context, args: Any, kwargs: Any) -> Any:
    """Run a ``def`` workflow in a worker thread, its operations on this loop.

    When the run is interrupted, the operation the thread is blocked on is cancelled
    and the thread's next durable operation raises; the run waits for the thread to
    unwind, except when the run is abandoned (nothing more will be written).
    """
    sync_context = SyncContext(context, asyncio.get_running_loop())
    thread = asyncio.ensure_future(asyncio.to_thread(sync_context.run_body, fn, args, kwargs))
    while True:
        try:
            return await asyncio.shield(thread)
        except asyncio.CancelledError:
            if thread.done() or isinstance(context.interruption, _Abandon):
                # Nobody awaits the thread any more: whatever it ends with (usually the
                # _Abandon its next operation raises) is dropped, not logged as lost.
                thread.add_done_callback(_drop_outcome)
                raise
            sync_context.cancel_in_flight()
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()


def _drop_outcome(thread: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of an abandoned body's thread (nobody else will)."""
    if not thread.cancelled():
        thread.exception()

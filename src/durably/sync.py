"""The synchronous face of durably: one-line delegations to the async implementation.

:class:`SyncDurably` runs a :class:`~durably.engine.Durably` on a background event
loop thread, for programs that never write ``async``. A plain ``def`` workflow gets a
:class:`~durably.sync_context.SyncContext`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Sequence,
)
from datetime import timedelta, tzinfo
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from durably._portal import Portal, ensure_no_running_loop
from durably.engine import Durably, RecoveryReport
from durably.errors import AppClosedError
from durably.handles import CheckpointInfo, WorkflowHandle, WorkflowInfo
from durably.models import WorkflowStatus
from durably.queues import Queue
from durably.retry import RetryPolicy
from durably.schedules import DEFAULT_MAX_BACKFILL
from durably.sync_context import SyncContext

__all__ = ["SyncContext", "SyncDurably", "SyncWorkflowHandle"]

R = TypeVar("R")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class SyncWorkflowHandle(Generic[R]):
    """The blocking twin of :class:`~durably.handles.WorkflowHandle`."""

    def __init__(self, app: SyncDurably, handle: WorkflowHandle[R]) -> None:
        self._app = app
        self._handle = handle
        self.workflow_id = handle.workflow_id

    def __repr__(self) -> str:
        return f"SyncWorkflowHandle({self.workflow_id!r})"

    def result(self, *, timeout: timedelta | float | None = None) -> R:
        """Wait for the workflow's result (see WorkflowHandle.result)."""
        return self._app.call(lambda: self._handle.result(timeout=timeout), "handle.result")

    def info(self) -> WorkflowInfo:
        """The workflow's current description."""
        return self._app.call(self._handle.info, "handle.info")

    def status(self) -> WorkflowStatus:
        """The workflow's current status."""
        return self._app.call(self._handle.status, "handle.status")

    def send_signal(
        self, name: str, payload: object = None, *, dedup_key: str | None = None
    ) -> bool:
        """Send a signal to the workflow."""
        return self._app.call(
            lambda: self._handle.send_signal(name, payload, dedup_key=dedup_key),
            "handle.send_signal",
        )

    def cancel(self, *, compensate: bool = False) -> WorkflowStatus:
        """Cancel the workflow."""
        return self._app.call(lambda: self._handle.cancel(compensate=compensate), "handle.cancel")


class SyncDurably:
    """A blocking :class:`~durably.engine.Durably`, for programs without ``async``.

    Takes the same arguments as ``Durably``. Use as ``with SyncDurably(...) as app:``.
    Calling it from inside a running event loop raises ``RuntimeError``.
    """

    def __init__(self, store: Any = "sqlite:///durably.db", **options: Any) -> None:
        self.app = Durably(store, **options)
        self._portal: Portal | None = None

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]], api: str) -> T:
        """Run an async API call on the background loop and wait for it."""
        if self._portal is None:
            raise AppClosedError()
        return self._portal.call(factory, api=f"SyncDurably.{api}")

    def workflow(
        self,
        name: str | None = None,
        *,
        version: str | None = None,
        also_runs: Collection[str] = (),
    ) -> Callable[[F], F]:
        """Register a workflow (see Durably.workflow)."""
        return self.app.workflow(name, version=version, also_runs=also_runs)

    def queue(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: int | None = None,
        per: timedelta | float = timedelta(seconds=1),
    ) -> Queue:
        """Declare a queue (see Durably.queue)."""
        return self.app.queue(
            name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            per=per,
        )

    def step(
        self,
        name: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        compensate: Callable[..., Any] | None = None,
    ) -> Callable[[F], F]:
        """Declare a step (see Durably.step)."""
        return self.app.step(name, retry=retry, timeout=timeout, compensate=compensate)

    def scheduled(
        self,
        cron: str,
        *,
        name: str | None = None,
        timezone: str | tzinfo = "UTC",
        backfill: bool = False,
        max_backfill: int = DEFAULT_MAX_BACKFILL,
        queue: Queue | str | None = None,
    ) -> Callable[[F], F]:
        """Run a workflow on a cron schedule (see Durably.scheduled)."""
        return self.app.scheduled(
            cron,
            name=name,
            timezone=timezone,
            backfill=backfill,
            max_backfill=max_backfill,
            queue=queue,
        )

    def open(self) -> None:
        """Open the app on a background event loop."""
        ensure_no_running_loop("SyncDurably.open")
        if self._portal is None:
            self._portal = Portal()
        self.call(self.app.open, "open")

    def close(self, *, grace: timedelta | float = 0) -> None:
        """Close the app and stop the background loop (see :meth:`Durably.close`,
        ``grace`` included). Idempotent."""
        if self._portal is None:
            return
        try:
            self.call(functools.partial(self.app.close, grace=grace), "close")
        finally:
            self._portal.close()
            self._portal = None

    def __enter__(self) -> SyncDurably:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @overload
    def start(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> SyncWorkflowHandle[R]: ...

    @overload
    def start(
        self,
        workflow: str,
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> SyncWorkflowHandle[Any]: ...

    def start(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> SyncWorkflowHandle[Any]:
        """Start a workflow; return its handle at once (see Durably.start)."""
        handle = self.call(
            lambda: self.app.start(
                workflow, *args, workflow_id=workflow_id, timeout=timeout, **kwargs
            ),
            "start",
        )
        return SyncWorkflowHandle(self, handle)

    @overload
    def enqueue(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        queue: Queue | str,
        priority: int = ...,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> SyncWorkflowHandle[R]: ...

    @overload
    def enqueue(
        self,
        workflow: str,
        /,
        *args: Any,
        queue: Queue | str,
        priority: int = ...,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> SyncWorkflowHandle[Any]: ...

    def enqueue(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        queue: Queue | str,
        priority: int = 0,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> SyncWorkflowHandle[Any]:
        """Put a workflow on a queue; return its handle at once (see Durably.enqueue)."""
        handle = self.call(
            lambda: self.app.enqueue(
                workflow,
                *args,
                queue=queue,
                priority=priority,
                workflow_id=workflow_id,
                timeout=timeout,
                **kwargs,
            ),
            "enqueue",
        )
        return SyncWorkflowHandle(self, handle)

    @overload
    def run(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> R: ...

    @overload
    def run(
        self,
        workflow: str,
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> Any: ...

    def run(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start a workflow and wait for its result (see Durably.run)."""
        return self.start(
            workflow, *args, workflow_id=workflow_id, timeout=timeout, **kwargs
        ).result()

    def handle(self, workflow_id: str) -> SyncWorkflowHandle[Any]:
        """A handle to an existing workflow."""
        return SyncWorkflowHandle(self, self.app.handle(workflow_id))

    def send_signal(
        self, workflow_id: str, name: str, payload: object = None, *, dedup_key: str | None = None
    ) -> bool:
        """Send a signal (see Durably.send_signal)."""
        return self.call(
            lambda: self.app.send_signal(workflow_id, name, payload, dedup_key=dedup_key),
            "send_signal",
        )

    def cancel(self, workflow_id: str, *, compensate: bool = False) -> WorkflowStatus:
        """Cancel a workflow (see Durably.cancel)."""
        return self.call(lambda: self.app.cancel(workflow_id, compensate=compensate), "cancel")

    def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """A workflow's description (see Durably.get_workflow)."""
        return self.call(lambda: self.app.get_workflow(workflow_id), "get_workflow")

    def list_workflows(
        self,
        *,
        status: WorkflowStatus | Sequence[WorkflowStatus] | None = None,
        name: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[WorkflowInfo]:
        """List workflows (see Durably.list_workflows)."""
        return self.call(
            lambda: self.app.list_workflows(
                status=status, name=name, limit=limit, offset=offset, newest_first=newest_first
            ),
            "list_workflows",
        )

    def recover(self) -> RecoveryReport:
        """Claim and resume every claimable workflow now (see Durably.recover)."""
        return self.call(self.app.recover, "recover")

    def request_recovery(self) -> None:
        """Ask for a debounced recovery pass (see Durably.request_recovery)."""
        self.app.request_recovery()

    def recovery_reports(self) -> Iterator[RecoveryReport]:
        """Iterate over the reports of requested recovery passes, blocking for each
        (see Durably.recovery_reports)."""
        return self.iterate(self.app.recovery_reports(), "recovery_reports")

    @overload
    def get_event(
        self, workflow_id: str, key: str, *, timeout: timedelta | float | None = ...
    ) -> Any: ...

    @overload
    def get_event(
        self,
        workflow_id: str,
        key: str,
        *,
        timeout: timedelta | float | None = ...,
        type: type[T],
    ) -> T | None: ...

    def get_event(
        self,
        workflow_id: str,
        key: str,
        *,
        timeout: timedelta | float | None = 60.0,
        type: object = Any,
    ) -> Any:
        """The latest value of a workflow's event, waiting for it (see Durably.get_event)."""
        return self.call(
            lambda: self.app.get_event(workflow_id, key, timeout=timeout, type=type),  # type: ignore[call-overload]
            "get_event",
        )

    @overload
    def read_stream(self, workflow_id: str, key: str) -> Iterator[Any]: ...

    @overload
    def read_stream(self, workflow_id: str, key: str, *, type: type[T]) -> Iterator[T]: ...

    def read_stream(self, workflow_id: str, key: str, *, type: object = Any) -> Iterator[Any]:
        """Iterate over a stream's entries as they are written, blocking for each one
        (see Durably.read_stream)."""
        stream = self.app.read_stream(workflow_id, key, type=type)  # type: ignore[call-overload]
        return self.iterate(stream, "read_stream")

    def watch(self, workflow_id: str) -> Iterator[WorkflowInfo]:
        """Yield the workflow now, then again at every change until it finishes,
        blocking for each (see Durably.watch)."""
        return self.iterate(self.app.watch(workflow_id), "watch")

    def watch_workflows(
        self,
        *,
        status: WorkflowStatus | Sequence[WorkflowStatus] | None = None,
        name: str | Sequence[str] | None = None,
        limit: int = 100,
    ) -> Iterator[list[WorkflowInfo]]:
        """Yield the matching workflows now, then again whenever the list changes,
        blocking for each (see Durably.watch_workflows)."""
        watched = self.app.watch_workflows(status=status, name=name, limit=limit)
        return self.iterate(watched, "watch_workflows")

    def history(self, workflow_id: str) -> list[CheckpointInfo]:
        """The durable operations a workflow recorded (see Durably.history)."""
        return self.call(lambda: self.app.history(workflow_id), "history")

    def watch_history(self, workflow_id: str) -> Iterator[list[CheckpointInfo]]:
        """Yield the workflow's history now, then again at every recorded operation
        until it finishes, blocking for each (see Durably.watch_history)."""
        return self.iterate(self.app.watch_history(workflow_id), "watch_history")

    def iterate(self, stream: AsyncIterator[T], api: str) -> Iterator[T]:
        """Iterate over an async iterator of the app, each step run on the background
        loop; leaving the iteration early closes ``stream`` there."""
        try:
            while True:

                async def next_entry() -> list[T]:
                    try:
                        return [await anext(stream)]
                    except StopAsyncIteration:
                        return []

                entries = self.call(next_entry, api)
                if not entries:
                    return
                yield entries[0]
        finally:
            if isinstance(stream, AsyncGenerator) and self._portal is not None:
                with contextlib.suppress(RuntimeError, AppClosedError):
                    self.call(stream.aclose, api)

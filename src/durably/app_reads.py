"""Reading workflows from outside them: their descriptions, the events and streams they
publish, their progress and their results."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, TypeVar, overload

from durably import events
from durably.app_state import AppState
from durably.environment import to_micros
from durably.error_records import workflow_failure
from durably.errors import WorkflowFailedError, WorkflowNotFoundError
from durably.handles import CheckpointInfo, WorkflowInfo
from durably.identifiers import validate_identifier
from durably.models import WorkflowRecord, WorkflowStatus
from durably.notifier import ANY_WORKFLOW, progress_key

R = TypeVar("R")
T = TypeVar("T")

#: What a watch finds at one look: the value to yield, the key that tells whether it
#: changed, and whether it is the last (the workflow finished).
_Look = tuple[T, object, bool]
_NOTHING_YET = object()


class AppReads(AppState):
    """The queries of :class:`~durably.engine.Durably`, for operators and clients."""

    async def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """The workflow's current description.

        Raises:
            WorkflowNotFoundError: no such workflow.
        """
        self._require_open()
        record = await self._store.get_workflow(workflow_id)
        if record is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
        return WorkflowInfo.from_record(record)

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | Sequence[WorkflowStatus] | None = None,
        name: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[WorkflowInfo]:
        """Workflows filtered by status and name, ordered by creation time."""
        self._require_open()
        statuses = [status] if isinstance(status, WorkflowStatus) else status
        names = [name] if isinstance(name, str) else name
        records = await self._store.list_workflows(
            statuses=statuses, names=names, limit=limit, offset=offset, newest_first=newest_first
        )
        return [WorkflowInfo.from_record(record) for record in records]

    async def watch_workflows(
        self,
        *,
        status: WorkflowStatus | Sequence[WorkflowStatus] | None = None,
        name: str | Sequence[str] | None = None,
        limit: int = 100,
    ) -> AsyncIterator[list[WorkflowInfo]]:
        """Yield the workflows :meth:`list_workflows` gives for these filters (oldest
        first), then the list again whenever it changes: a workflow appears, leaves
        or changes status. It never ends by itself: break out of the loop.

        Changes made in this process are seen at once; those of other processes
        within ``poll_interval`` (at once on PostgreSQL, which announces them).
        """
        self._require_open()

        async def look() -> _Look[list[WorkflowInfo]]:
            listed = await self.list_workflows(status=status, name=name, limit=limit)
            return listed, [(info.workflow_id, info.status) for info in listed], False

        async for listed in self._changes(ANY_WORKFLOW, look):
            yield listed

    async def history(self, workflow_id: str) -> list[CheckpointInfo]:
        """The durable operations the workflow recorded (its checkpoints): body
        operations in the order it made them, then its compensations in the order
        they were registered.

        Raises:
            WorkflowNotFoundError: no such workflow.
        """
        self._require_open()
        workflow_id = validate_identifier(workflow_id, "workflow_id")
        if await self._store.get_workflow(workflow_id) is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
        return await self._checkpoints(workflow_id)

    async def watch_history(self, workflow_id: str) -> AsyncIterator[list[CheckpointInfo]]:
        """Yield :meth:`history` now, then again whenever an operation is recorded or
        changes, until the workflow finishes. An unknown id yields nothing."""
        self._require_open()

        async def look() -> _Look[list[CheckpointInfo]] | None:
            record = await self._store.get_workflow(workflow_id)
            if record is None:
                return None
            checkpoints = await self._checkpoints(workflow_id)
            key = [(c.seq, c.status, c.attempts) for c in checkpoints]
            return checkpoints, key, record.status.is_terminal

        async for checkpoints in self._changes(progress_key(workflow_id), look):
            yield checkpoints

    async def _checkpoints(self, workflow_id: str) -> list[CheckpointInfo]:
        operations = (await self._store.load_history(workflow_id)).operations
        body = sorted(seq for seq in operations if seq >= 0)
        compensations = sorted((seq for seq in operations if seq < 0), reverse=True)
        return [CheckpointInfo.from_record(operations[seq]) for seq in body + compensations]

    @overload
    async def get_event(
        self, workflow_id: str, key: str, *, timeout: timedelta | float | None = ...
    ) -> Any: ...

    @overload
    async def get_event(
        self,
        workflow_id: str,
        key: str,
        *,
        timeout: timedelta | float | None = ...,
        type: type[R],
    ) -> R | None: ...

    async def get_event(
        self,
        workflow_id: str,
        key: str,
        *,
        timeout: timedelta | float | None = 60.0,
        type: object = Any,
    ) -> Any:
        """The latest value a workflow published with ``ctx.set_event(key, ...)``,
        waiting for it to be set (see :mod:`durably.events`).

        Args:
            workflow_id: The publishing workflow.
            key: The event's name.
            timeout: Wait at most this long, on the app's clock (None: no limit).
            type: Decode the value into this type (a dataclass, a pydantic model...);
                by default it comes back as plain JSON data.

        Returns:
            The value, or None when the timeout passed first, or the workflow finished
            without setting it.

        Raises:
            WorkflowNotFoundError: no such workflow.
            PayloadError: the stored value does not fit ``type``.
        """
        self._require_open()
        micros = None if timeout is None else to_micros(timeout, "get_event timeout")
        deadline = None if micros is None else self._clock.now() + micros
        async with self._waiting(deadline):
            return await events.get_event(self._env, workflow_id, key, timeout=micros, hint=type)

    @overload
    def read_stream(self, workflow_id: str, key: str) -> AsyncIterator[Any]: ...

    @overload
    def read_stream(self, workflow_id: str, key: str, *, type: type[R]) -> AsyncIterator[R]: ...

    def read_stream(self, workflow_id: str, key: str, *, type: object = Any) -> AsyncIterator[Any]:
        """Iterate over the entries a workflow writes with ``ctx.write_stream(key, ...)``,
        in order, as they are written: ``async for entry in app.read_stream(id, key)``.

        The iteration ends after the entry before ``ctx.close_stream(key)``, or once the
        workflow has stopped (finished, or parked) and every entry was read.

        Args:
            workflow_id: The writing workflow.
            key: The stream's name.
            type: Decode each entry into this type; by default plain JSON data.

        Raises:
            WorkflowNotFoundError: no such workflow (when iterating).
            PayloadError: an entry does not fit ``type``.
        """
        self._require_open()
        return self._each_awaited(events.read_stream(self._env, workflow_id, key, hint=type))

    async def watch(self, workflow_id: str) -> AsyncIterator[WorkflowInfo]:
        """Yield the workflow now, then again at every change, until it finishes.

        An unknown id yields nothing.
        """
        self._require_open()

        async def look() -> _Look[WorkflowInfo] | None:
            record = await self._store.get_workflow(workflow_id)
            if record is None:
                return None
            key = (record.status, record.updated_at)
            return WorkflowInfo.from_record(record), key, record.status.is_terminal

        async for info in self._changes(progress_key(workflow_id), look):
            yield info

    def _changes(
        self, channel: str, look: Callable[[], Awaitable[_Look[T] | None]]
    ) -> AsyncIterator[T]:
        """What ``look`` finds now, then again whenever its key changes, looking again
        at every notification on ``channel`` (and every ``poll_interval``, for other
        processes' changes); ends when ``look`` finds nothing or says it is the last.
        Each change is awaited inside :meth:`_waiting`."""
        return self._each_awaited(self._looks(channel, look))

    async def _looks(
        self, channel: str, look: Callable[[], Awaitable[_Look[T] | None]]
    ) -> AsyncIterator[T]:
        last: object = _NOTHING_YET
        with self._notifier.watching(channel):
            while True:
                seen = self._notifier.generation(channel)
                found = await look()
                if found is None:
                    return
                value, key, final = found
                if key != last:
                    last = key
                    yield value
                if final:
                    return
                until = self._clock.now() + self._env.poll_interval
                await self._notifier.wait(channel, until, since=seen)

    async def wait_for_result(
        self, workflow_id: str, *, timeout: timedelta | float | None = None
    ) -> object:
        """Wait until the workflow finishes; return its decoded result (see handles)."""
        self._require_open()
        deadline = None if timeout is None else self._clock.now() + to_micros(timeout, "timeout")
        async with self._waiting(deadline):
            with self._notifier.watching(workflow_id):
                seen: int | None = None
                polled = False
                while True:
                    # Ended in this process while we waited: no need to read it back.
                    record = None if seen is None else self._notifier.final(workflow_id, since=seen)
                    # Running in this process: its run will hand its end over (the poll
                    # reads anyway, in case another process took it over).
                    running_here = not polled and workflow_id in self._runs
                    seen = self._notifier.generation(workflow_id)
                    if record is None and not running_here:
                        record = await self._store.get_workflow(workflow_id)
                        if record is None:
                            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
                    if record is not None and (
                        record.status.is_terminal or record.status is WorkflowStatus.PARKED
                    ):
                        return self._result_of(record)
                    now = self._clock.now()
                    if deadline is not None and now >= deadline:
                        status = "running" if record is None else record.status
                        raise TimeoutError(
                            f"workflow {workflow_id!r} is still {status} after the timeout"
                        )
                    until = now + self._env.poll_interval
                    if deadline is not None:
                        until = min(until, deadline)
                    polled = not await self._notifier.wait(workflow_id, until, since=seen)

    def _waiting(self, deadline: int | None = None) -> AbstractAsyncContextManager[None]:
        """Entered while a caller waits for a workflow (its result, an event, the next
        entry of a stream or the next change it watches), with the caller's timeout
        as a moment on the app's clock: the test kit skips idle time there."""
        return contextlib.nullcontext()

    async def _each_awaited(self, stream: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """``stream``, each item awaited inside :meth:`_waiting` (not the caller's
        handling of one)."""
        try:
            while True:
                async with self._waiting():
                    try:
                        item = await anext(stream)
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()

    def _result_of(self, record: WorkflowRecord) -> object:
        """The decoded result of a workflow that ended, or its failure raised."""
        if record.status is not WorkflowStatus.COMPLETED:
            raise _failure(record)
        definition = self.registry.workflows.get(record.workflow_name)
        hint = definition.result_hint if definition is not None else Any
        return self._env.codec.decode(
            record.result,
            record.serializer,
            hint,
            what=f"the result of workflow {record.workflow_id!r}",
        )


def _failure(record: WorkflowRecord) -> WorkflowFailedError:
    return workflow_failure(record.workflow_id, record.status, record.error_info)

"""Events and streams: values a workflow publishes for readers outside it.

Inside a workflow, ``await ctx.set_event(key, value)`` publishes the latest value of
``key``; ``await ctx.write_stream(key, value)`` appends an entry to the stream ``key``
and ``await ctx.close_stream(key)`` ends it. Each is a durable operation recorded in the
workflow's history (kinds ``EVENT``, ``STREAM`` and ``STREAM_CLOSE``), so a replay
never publishes twice and what was published survives crashes.

Outside, :func:`get_event` and :func:`read_stream` (``app.get_event``,
``app.read_stream``) read that history through the store's narrow
``list_operations``. They wait on the app's notifier, woken when this process records
an operation of the workflow or, on PostgreSQL, when another process does (its change
feed), and look at the store again every ``poll_interval`` as the safety net (how a
reader on SQLite learns of another process's writes).

Order: a stream's entries are read in ``seq`` order, and each reader remembers the last
``seq`` it gave out. So that no entry can commit below a ``seq`` a reader has already
passed, the entries of one stream are recorded one after another in ``seq`` order: a
write first records every earlier write of the same stream still waiting, even one that
was started together with it by ``asyncio.gather`` or is awaited later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from durably.context_core import ContextCore
from durably.environment import RunEnvironment
from durably.errors import WorkflowNotFoundError
from durably.identifiers import validate_identifier
from durably.models import (
    OperationKind,
    OperationRecord,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.notifier import progress_key
from durably.store.base import Store

_STREAM_KINDS = (OperationKind.STREAM, OperationKind.STREAM_CLOSE)


class PublishingOperations(ContextCore):
    """Setting events and writing streams (mixed into :class:`~durably.context.Context`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closed_streams: set[str] = set()
        #: Per stream, its writes not recorded yet, in seq order.
        self._unrecorded: dict[str, list[OperationRecord]] = {}
        self._stream_locks: dict[str, asyncio.Lock] = {}

    def set_event(self, key: str, value: object) -> Coroutine[Any, Any, None]:
        """Publish ``value`` under ``key``, readable outside with ``app.get_event``.

        Setting the same key again replaces the value readers get (each setting is
        recorded; the latest one wins). Recorded once: a replay does not publish again.

        Args:
            key: The event's name.
            value: Any encodable value (readers decode it by the type they ask for).

        Returns:
            An awaitable that completes once the value is recorded.

        Raises:
            PayloadError: ``value`` cannot be encoded (raised at the call).
            WorkflowCancelled: the workflow was cancelled.
        """
        validate_identifier(key, "event key")
        seq = self._take_seq()
        operation = self._publication(seq, OperationKind.EVENT, key, value, f"event {key!r}")
        return self._track(self._publish(seq, OperationKind.EVENT, key, operation))

    def write_stream(self, key: str, value: object) -> Coroutine[Any, Any, None]:
        """Append ``value`` to the stream ``key``, read outside with ``app.read_stream``.

        Entries are read in the order of the calls. Recorded once: a replay does not
        write the entry again.

        Args:
            key: The stream's name.
            value: Any encodable value (readers decode it by the type they ask for).

        Returns:
            An awaitable that completes once the entry is recorded.

        Raises:
            ValueError: the stream was closed by this workflow (raised at the call).
            PayloadError: ``value`` cannot be encoded (raised at the call).
            WorkflowCancelled: the workflow was cancelled.
        """
        validate_identifier(key, "stream key")
        if key in self._closed_streams:
            raise ValueError(
                f"stream {key!r} of workflow {self.workflow_id!r} is closed; write every "
                f"entry before ctx.close_stream({key!r}), or write to another stream key"
            )
        return self._stream_operation(OperationKind.STREAM, key, value)

    def close_stream(self, key: str) -> Coroutine[Any, Any, None]:
        """End the stream ``key``: readers stop after its last entry.

        A stream that is never closed ends for its readers when the workflow finishes.
        Closing a closed stream does nothing.

        Returns:
            An awaitable that completes once the end is recorded.

        Raises:
            WorkflowCancelled: the workflow was cancelled.
        """
        validate_identifier(key, "stream key")
        if key in self._closed_streams:
            return _nothing()
        self._closed_streams.add(key)
        return self._stream_operation(OperationKind.STREAM_CLOSE, key, None)

    # -- internals ----------------------------------------------------------------

    def _stream_operation(
        self, kind: OperationKind, key: str, value: object
    ) -> Coroutine[Any, Any, None]:
        seq = self._take_seq()
        operation = self._publication(seq, kind, key, value, f"an entry of stream {key!r}")
        if operation is not None:
            self._unrecorded.setdefault(key, []).append(operation)
        return self._track(self._publish_in_order(seq, kind, key, operation))

    def _publication(
        self, seq: int, kind: OperationKind, key: str, value: object, what: str
    ) -> OperationRecord | None:
        """The record to write at ``seq``, or None when the history holds one (replay)."""
        if seq in self._history.operations:
            return None
        codec = self._env.codec
        result = None
        if kind is not OperationKind.STREAM_CLOSE:
            # Readers decode by the type they ask for; nothing comes back on replay.
            result = codec.encode(
                value, Any, what=f"{what} of workflow {self.workflow_id!r}", verify=False
            )
        return self._finished_now(seq, kind, key, result=result, serializer=codec.serializer_name)

    async def _publish(
        self, seq: int, kind: OperationKind, key: str, operation: OperationRecord | None
    ) -> None:
        if operation is None:
            self._replayed(seq, kind, key)  # checks that the history agrees
            return
        self._raise_if_interrupted()
        await self._record(operation)

    async def _publish_in_order(
        self, seq: int, kind: OperationKind, key: str, operation: OperationRecord | None
    ) -> None:
        if operation is None:
            self._replayed(seq, kind, key)
            return
        lock = self._stream_locks.setdefault(key, asyncio.Lock())
        async with lock:
            waiting = self._unrecorded[key]
            # Earlier writes of this stream go first; a write recorded meanwhile by a
            # later one is no longer waiting. An interrupted record stays waiting and
            # is written again (at the same seq) by the next writer.
            while waiting and waiting[0].seq <= seq:
                self._raise_if_interrupted()
                await self._record(waiting[0])
                waiting.pop(0)


async def _nothing() -> None:
    return None


# -- readers ----------------------------------------------------------------------


async def get_event(
    env: RunEnvironment, workflow_id: str, key: str, *, timeout: int | None, hint: object
) -> Any:
    """The latest value the workflow set under ``key``, waiting up to ``timeout``
    microseconds (None: forever) for it to be set.

    Returns:
        The value decoded into ``hint``, or None when the timeout passed, or the
        workflow finished without setting it.

    Raises:
        WorkflowNotFoundError: no such workflow.
        PayloadError: the stored value does not fit ``hint``.
    """
    validate_identifier(workflow_id, "workflow_id")
    validate_identifier(key, "event key")
    deadline = None if timeout is None else env.clock.now() + max(timeout, 0)
    channel = progress_key(workflow_id)
    with env.notifier.watching(channel):
        while True:
            seen = env.notifier.generation(channel)
            # The status is read first: once it is final, the events read next are too.
            record = await _existing(env.store, workflow_id)
            events = await env.store.list_operations(
                workflow_id, kinds=(OperationKind.EVENT,), name=key
            )
            if events:
                latest = events[-1]
                return env.codec.decode(
                    latest.result,
                    latest.serializer,
                    hint,
                    what=f"event {key!r} of workflow {workflow_id!r}",
                )
            if record.status.is_terminal:
                return None
            now = env.clock.now()
            if deadline is not None and now >= deadline:
                return None
            until = now + env.poll_interval
            if deadline is not None:
                until = min(until, deadline)
            await env.notifier.wait(channel, until, since=seen)


async def read_stream(
    env: RunEnvironment, workflow_id: str, key: str, *, hint: object
) -> AsyncIterator[Any]:
    """Yield the entries of the workflow's stream ``key`` in order, as they are written,
    until the stream is closed or the workflow stops (finished, or parked).

    Raises:
        WorkflowNotFoundError: no such workflow.
        PayloadError: a stored entry does not fit ``hint``.
    """
    validate_identifier(workflow_id, "workflow_id")
    validate_identifier(key, "stream key")
    after = -1
    channel = progress_key(workflow_id)
    with env.notifier.watching(channel):
        while True:
            seen = env.notifier.generation(channel)
            record = await _existing(env.store, workflow_id)
            entries = await env.store.list_operations(
                workflow_id, kinds=_STREAM_KINDS, name=key, after_seq=after
            )
            for entry in entries:
                if entry.kind is OperationKind.STREAM_CLOSE:
                    return
                after = entry.seq
                yield env.codec.decode(
                    entry.result,
                    entry.serializer,
                    hint,
                    what=f"entry #{entry.seq} of stream {key!r} of workflow {workflow_id!r}",
                )
            if record.status.is_terminal or record.status is WorkflowStatus.PARKED:
                return
            await env.notifier.wait(channel, env.clock.now() + env.poll_interval, since=seen)


async def _existing(store: Store, workflow_id: str) -> WorkflowRecord:
    record = await store.get_workflow(workflow_id)
    if record is None:
        raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
    return record

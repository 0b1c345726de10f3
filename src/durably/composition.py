"""Child workflows inside a workflow: ``ctx.start_child``, ``ctx.run_child`` and the
handle's ``result()``.

``ctx.start_child(workflow, ...)`` is a durable operation (kind ``CHILD``): it creates
the child workflow once, under a deterministic id (``f"{parent_id}:{seq}"`` unless one
is given), and records that id; a replay gets the same child back without creating
anything. Awaiting ``handle.result()`` is another durable operation (kind
``CHILD_RESULT``): it records the child's result, or its failure, which the parent
gets as a :class:`~durably.errors.WorkflowFailedError` it can catch, on the first run
and on every replay alike. While the child runs, the parent waits in memory for a
short while (``inline_wait``) and then suspends, holding no memory, until the child
ends (see :mod:`durably.children` for how it is woken).

``ctx.map`` (:mod:`durably.map_operation`) builds on these operations.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from durably.children import ChildWorkflows, child_failure, child_signal, recheck_delay
from durably.context_core import ContextCore
from durably.environment import to_micros
from durably.error_records import error_to_info
from durably.errors import (
    ConfigurationError,
    PayloadError,
    WorkflowNotFoundError,
    _Suspend,
)
from durably.identifiers import validate_identifier
from durably.models import (
    ErrorInfo,
    OperationKind,
    OperationRecord,
    OperationStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.queues import Queue, check_priority, queue_name
from durably.registry import DEFINITION_ATTRIBUTE, WorkflowDefinition

R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildCall:
    """A child workflow to start, checked when the parent asked for it."""

    name: str
    definition: WorkflowDefinition | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    workflow_id: str | None
    timeout: timedelta | float | None
    queue: str | None = None
    priority: int = 0

    @property
    def result_hint(self) -> object:
        return Any if self.definition is None else self.definition.result_hint


class ChildHandle(Generic[R]):
    """A child workflow started by ``ctx.start_child``, as its parent sees it.

    Use it only inside the parent's body. ``workflow_id`` is the child's id (pass it to
    ``app.handle()`` outside the workflow).
    """

    def __init__(
        self, context: ChildOperations, workflow_id: str, call: ChildCall, started_at: int
    ) -> None:
        self._context = context
        self._call = call
        self.workflow_id = workflow_id
        self.workflow_name = call.name
        #: When the parent started the child (epoch microseconds).
        self.started_at = started_at

    def __repr__(self) -> str:
        return f"ChildHandle({self.workflow_id!r}, workflow={self.workflow_name!r})"

    def result(self) -> Coroutine[Any, Any, R]:
        """Wait for the child to end and return its result: a durable operation of the
        parent, numbered when called (so ``asyncio.gather`` over several results
        numbers them in call order).

        Returns:
            An awaitable of the child's result (decoded by its return annotation).

        Raises:
            WorkflowFailedError: the child ended in another status than COMPLETED (its
                error rebuilt as ``__cause__`` when that is safe). A ``PARKED`` child is
                waited for: an operator may resume it.
            WorkflowCancelled: the parent was cancelled.
        """
        return self._context._child_result_call(self)


class ChildOperations(ContextCore):
    """Child workflows and ``ctx.map`` (mixed into :class:`~durably.context.Context`)."""

    if TYPE_CHECKING:  # provided by Context

        def _replayed_result(self, recorded: OperationRecord, hint: object, what: str) -> Any: ...

        def _replayed_error(self, recorded: OperationRecord) -> Exception: ...

    @overload
    def start_child(
        self,
        workflow: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        queue: Queue | str | None = ...,
        priority: int = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, ChildHandle[R]]: ...

    @overload
    def start_child(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        queue: Queue | str | None = ...,
        priority: int = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, ChildHandle[R]]: ...

    @overload
    def start_child(
        self,
        workflow: str,
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        queue: Queue | str | None = ...,
        priority: int = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, ChildHandle[Any]]: ...

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
    ) -> Coroutine[Any, Any, ChildHandle[Any]]:
        """Start a child workflow: a durable operation that creates it once.

        The child runs on its own (here or in any process sharing the store); await
        ``handle.result()`` for its result. Cancelling this workflow cancels its
        children that have not ended.

        Args:
            workflow: A workflow registered in this app (its function or its name).
            *args: The child's arguments (after its context).
            workflow_id: The child's id (default: ``f"{this workflow's id}:{seq}"``,
                the same on every replay).
            timeout: A durable deadline for the child.
            queue: Put the child on this declared queue (see ``app.enqueue``): it
                runs when the queue's limits allow, on any worker declaring it.
            priority: Its priority on ``queue`` (higher first).
            **kwargs: The child's keyword arguments.

        Returns:
            An awaitable of a :class:`ChildHandle`.

        Raises:
            WorkflowNotRegisteredError: the workflow is not registered (at the call).
            TypeError: the arguments do not fit its signature (at the call).
            WorkflowConflictError: ``workflow_id`` is taken by another workflow or input.
            ConfigurationError: ``queue`` is not declared in this app (at the call).
            WorkflowCancelled: this workflow was cancelled.
        """
        call = self._child_call(
            workflow, args, kwargs, workflow_id, timeout, queue=queue, priority=priority
        )
        seq = self._take_seq()
        return self._track(self._start_child(seq, call, self._child_id(call, seq)))

    @overload
    def run_child(
        self,
        workflow: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        queue: Queue | str | None = ...,
        priority: int = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def run_child(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        queue: Queue | str | None = ...,
        priority: int = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def run_child(
        self,
        workflow: str,
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        queue: Queue | str | None = ...,
        priority: int = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, Any]: ...

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
    ) -> Coroutine[Any, Any, Any]:
        """Start a child workflow and wait for its result: ``start_child`` then
        ``result()``, both numbered at this call (two durable operations); the
        arguments are those of :meth:`start_child`.

        Raises:
            WorkflowFailedError: the child did not complete.
        """
        call = self._child_call(
            workflow, args, kwargs, workflow_id, timeout, queue=queue, priority=priority
        )
        start_seq = self._take_seq()
        result_seq = self._take_seq()
        child_id = self._child_id(call, start_seq)
        return self._track(self._run_child(start_seq, result_seq, call, child_id))

    # -- internals ----------------------------------------------------------------

    def _children(self) -> ChildWorkflows:
        children = self._env.children
        if children is None:
            raise ConfigurationError(
                f"workflow {self.workflow_id!r} cannot start child workflows here: its "
                f"context was made without an app"
            )
        return children

    def _child_call(
        self,
        workflow: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        workflow_id: str | None,
        timeout: timedelta | float | None,
        *,
        queue: Queue | str | None = None,
        priority: int = 0,
        bind: bool = True,
    ) -> ChildCall:
        children = self._env.children
        definition: WorkflowDefinition | None
        if children is not None:
            definition = children.registry.lookup(workflow)
        else:  # no app (a dry run replays recorded operations only)
            found = getattr(workflow, DEFINITION_ATTRIBUTE, None)
            definition = found if isinstance(found, WorkflowDefinition) else None
        if definition is not None and bind:
            definition.bind_input(args, kwargs)
        if workflow_id is not None:
            validate_identifier(workflow_id, "workflow_id")
            if workflow_id == self.workflow_id:
                raise ValueError(
                    f"workflow {self.workflow_id!r} cannot be its own child; give the child "
                    f"another workflow_id"
                )
        if timeout is not None:
            to_micros(timeout, "timeout")
        check_priority(priority)
        declared = None
        if queue is not None:  # checked against the app's queues when it has children
            declared = queue_name(queue) if children is None else children.queue_name(queue)
        name = (
            definition.name
            if definition is not None
            else workflow
            if isinstance(workflow, str)
            else getattr(workflow, "__qualname__", repr(workflow))
        )
        return ChildCall(
            name=name,
            definition=definition,
            args=args,
            kwargs=kwargs,
            workflow_id=workflow_id,
            timeout=timeout,
            queue=declared,
            priority=priority,
        )

    def _child_id(self, call: ChildCall, seq: int) -> str:
        if call.workflow_id is not None:
            return call.workflow_id
        return validate_identifier(f"{self.workflow_id}:{seq}", "child workflow_id")

    async def _start_child(self, seq: int, call: ChildCall, child_id: str) -> ChildHandle[Any]:
        recorded = self._replayed(seq, OperationKind.CHILD, call.name)
        if recorded is not None:
            if recorded.status is OperationStatus.FAILED:
                raise self._replayed_error(recorded)
            what = f"the id of child workflow {call.name!r} (operation #{seq})"
            recorded_id = self._replayed_result(recorded, str, what)
            return ChildHandle(self, recorded_id, call, recorded.started_at)
        self._raise_if_interrupted()
        children = self._children()
        started = self._env.clock.now()
        assert call.definition is not None
        try:
            created = await self._fenced(
                children.start(
                    self.workflow_id,
                    call.definition,
                    call.args,
                    call.kwargs,
                    workflow_id=child_id,
                    timeout=call.timeout,
                    queue=call.queue,
                    priority=call.priority,
                ),
                "start_child",
            )
        except Exception as error:
            await self._record(
                self._operation(
                    seq, OperationKind.CHILD, call.name, started, error=self._error_info(error)
                )
            )
            raise
        await self._record(
            self._operation(
                seq, OperationKind.CHILD, call.name, started, result=json.dumps(created)
            )
        )
        return ChildHandle(self, created, call, started)

    def _child_result_call(self, handle: ChildHandle[Any]) -> Coroutine[Any, Any, Any]:
        return self._track(self._child_result(self._take_seq(), handle))

    async def _run_child(
        self, start_seq: int, result_seq: int, call: ChildCall, child_id: str
    ) -> Any:
        handle = await self._start_child(start_seq, call, child_id)
        return await self._child_result(result_seq, handle)

    async def _child_result(self, seq: int, handle: ChildHandle[Any]) -> Any:
        child_id = handle.workflow_id
        hint = handle._call.result_hint
        what = f"the result of child workflow {child_id!r}"
        recorded = self._replayed(seq, OperationKind.CHILD_RESULT, child_id)
        if recorded is not None:
            if recorded.status is OperationStatus.COMPLETED:
                return self._replayed_result(recorded, hint, what)
            if recorded.result is None:  # the child was missing, or its result unreadable
                raise self._replayed_error(recorded)
            status = self._replayed_result(recorded, str, f"the status of {what}")
            raise child_failure(child_id, status, recorded.error_info)
        self._raise_if_interrupted()
        children = self._children()
        env = self._env
        inline_until = env.clock.now() + env.inline_wait
        with env.notifier.watching(child_id):
            while True:
                seen = env.notifier.generation(child_id)
                child = await self._fenced(children.get(child_id), "read child workflow")
                now = env.clock.now()
                if child is None or child.status.is_terminal:
                    return await self._record_child_end(seq, handle, child, what)
                if now >= inline_until:
                    raise _Suspend(
                        now + recheck_delay(now - handle.started_at),
                        f"waiting for child workflow {child_id!r}",
                        signal=child_signal(child_id),
                    )
                until = min(inline_until, now + env.poll_interval)
                await self._interruptibly(env.notifier.wait(child_id, until, since=seen))
                self._raise_if_interrupted()

    async def _record_child_end(
        self, seq: int, handle: ChildHandle[Any], child: WorkflowRecord | None, what: str
    ) -> Any:
        """Record how the child ended and return its result or raise its failure."""
        child_id, started = handle.workflow_id, handle.started_at
        kind = OperationKind.CHILD_RESULT
        if child is None:
            missing = WorkflowNotFoundError(
                f"child workflow {child_id!r} no longer exists (it was deleted or purged)"
            )
            await self._record(
                self._operation(seq, kind, child_id, started, error=self._error_info(missing))
            )
            raise missing
        if child.status is not WorkflowStatus.COMPLETED:
            await self._record(
                self._operation(
                    seq,
                    kind,
                    child_id,
                    started,
                    result=json.dumps(str(child.status)),
                    error=child.error_info,
                    failed=True,
                )
            )
            raise child_failure(child_id, str(child.status), child.error_info)
        try:
            value = self._env.codec.decode(
                child.result, child.serializer, handle._call.result_hint, what=what
            )
        except PayloadError as error:
            await self._record(
                self._operation(seq, kind, child_id, started, error=self._error_info(error))
            )
            raise
        await self._record(
            self._operation(
                seq, kind, child_id, started, result=child.result, serializer=child.serializer
            )
        )
        return value

    def _error_info(self, error: BaseException) -> ErrorInfo:
        return error_to_info(error, self._env.error_formatter)

    def _operation(
        self,
        seq: int,
        kind: OperationKind,
        name: str,
        started: int,
        *,
        result: str | None = None,
        serializer: str = "json",
        error: ErrorInfo | None = None,
        failed: bool = False,
    ) -> OperationRecord:
        """A finished operation record: FAILED when it has an error (or ``failed``)."""
        return OperationRecord(
            workflow_id=self.workflow_id,
            seq=seq,
            kind=kind,
            name=name,
            status=(
                OperationStatus.FAILED if failed or error is not None else OperationStatus.COMPLETED
            ),
            result=result,
            error=None if error is None else error.to_json(),
            serializer=serializer,
            started_at=started,
            finished_at=self._env.clock.now(),
        )

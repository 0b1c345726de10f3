"""Child workflows on the engine's side: creating them, linking them to their parent,
and what happens when either of them ends.

A parent starts a child with ``ctx.start_child`` (see :mod:`durably.composition`). The
child is an ordinary workflow, created idempotently under a deterministic id, and
linked to its parent without any schema of its own: durably puts a reserved signal,
:data:`PARENT_SIGNAL`, whose payload is the parent's id, into the child's inbox. Every
process sharing the store can therefore follow the link. When a workflow ends
(:meth:`ChildWorkflows.workflow_ended`, called by the runner and by cancellations):

* its parent, if it has one, receives the reserved signal :func:`child_signal`, which
  wakes the parent if it is suspended waiting for this child (it then reads the
  child's record; the signal itself carries nothing and is never consumed);
* if it was cancelled, every child it started that has not ended is cancelled too
  (their ids are the results of the ``CHILD`` operations in its history).

A workflow this process created as a top-level one (``app.start``) and ran to its end
has no parent to look for, unless a parent here adopted it as its child meanwhile
(starting a child under its id): the inbox read is skipped. A parent elsewhere that
adopts it is woken by its recheck instead.

The link is only a wake-up: a parent waiting for a child always reads the child's
record first, and a suspended parent also looks again after a while (see
:func:`recheck_delay`), so a process that dies between a child's end and the signal to
its parent delays the parent but never loses it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from durably.clock import Clock
from durably.error_records import workflow_failure
from durably.errors import WorkflowFailedError, WorkflowFinishedError, WorkflowNotFoundError
from durably.identifiers import RESERVED_PREFIX
from durably.models import (
    ErrorInfo,
    OperationKind,
    OperationStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.notifier import Notifier
from durably.registry import Registry, WorkflowDefinition
from durably.store.base import Store

if TYPE_CHECKING:
    from durably.queues import Queue

logger = logging.getLogger("durably.children")

#: The reserved signal in a child's inbox whose payload is its parent's id.
PARENT_SIGNAL = f"{RESERVED_PREFIX}parent__"
#: The prefix of the reserved signal a parent receives when one of its children ends.
CHILD_SIGNAL_PREFIX = f"{RESERVED_PREFIX}child__:"

#: A parent suspended on a child looks at the child again after the time the child
#: has run so far, within these bounds (microseconds): the signal is the fast path,
#: this the safety net.
MIN_RECHECK = 1_000_000
MAX_RECHECK = 3_600_000_000


class CreateWorkflow(Protocol):
    """Creates a workflow like ``app.start`` (or ``app.enqueue``, given a queue), or
    finds the same one under its id, and returns its id."""

    def __call__(
        self,
        definition: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        workflow_id: str,
        timeout: timedelta | float | None,
        *,
        queue: str | None,
        priority: int,
        as_child: bool = False,
    ) -> Awaitable[str]: ...


def child_signal(child_id: str) -> str:
    """The name of the signal a parent receives when its child ``child_id`` ends."""
    return CHILD_SIGNAL_PREFIX + child_id


def recheck_delay(waited: int) -> int:
    """How long a parent suspended on a child sleeps before it looks again, given how
    long (microseconds) the child has been running: as long again, between one second
    and one hour."""
    return min(max(waited, MIN_RECHECK), MAX_RECHECK)


def child_failure(child_id: str, status: str, info: ErrorInfo | None) -> WorkflowFailedError:
    """The error a parent gets for a child that ended in ``status`` (not COMPLETED):
    the same on the first run and on replay (the child's error, rebuilt when that is
    safe, is its ``__cause__``)."""
    return workflow_failure(child_id, status, info, what="child workflow")


async def link_to_parent(store: Store, child_id: str, parent_id: str, *, now: int) -> None:
    """Record ``parent_id`` as the parent of ``child_id`` (idempotent). A child that has
    ended already is left alone: its parent reads its record before waiting."""
    with contextlib.suppress(WorkflowFinishedError):
        await store.append_signal(
            child_id,
            PARENT_SIGNAL,
            json.dumps(parent_id),
            serializer="json",
            dedup_key=PARENT_SIGNAL,
            now=now,
        )


async def parent_of(store: Store, workflow_id: str) -> str | None:
    """The id of the workflow that started ``workflow_id`` as a child, if any."""
    for signal in await store.list_signals(workflow_id):
        if signal.name == PARENT_SIGNAL and signal.payload is not None:
            parent = json.loads(signal.payload)
            return parent if isinstance(parent, str) else None
    return None


async def notify_parent(store: Store, workflow_id: str, *, now: int) -> str | None:
    """Send the parent of ``workflow_id`` (which has ended) its reserved signal, once.

    Returns:
        The parent's id when it was told, None when there is no live parent.
    """
    parent = await parent_of(store, workflow_id)
    if parent is None:
        return None
    name = child_signal(workflow_id)
    try:
        await store.append_signal(parent, name, None, serializer="json", dedup_key=name, now=now)
    except (WorkflowFinishedError, WorkflowNotFoundError):
        return None
    return parent


async def cancel_children(store: Store, workflow_id: str, *, now: int) -> list[str]:
    """Cancel every child of the cancelled workflow ``workflow_id`` that has not ended,
    and theirs in turn (a child nobody runs is cancelled at once; a running one is
    stopped by its owner). Children are cancelled with compensation when the parent's
    cancellation asked for it.

    Returns:
        The ids of the children whose cancellation was requested.
    """
    touched: list[str] = []
    seen = {workflow_id}
    parents = [workflow_id]
    while parents:
        parent = parents.pop()
        record = await store.get_workflow(parent)
        compensate = record is not None and record.compensate_on_cancel
        for child_id in await started_children(store, parent):
            if child_id in seen:
                continue
            seen.add(child_id)
            try:
                child = await store.request_cancel(child_id, compensate=compensate, now=now)
            except (WorkflowFinishedError, WorkflowNotFoundError):
                continue
            touched.append(child_id)
            if child.status is WorkflowStatus.CANCELLED:
                parents.append(child_id)  # nobody runs it: cancel its children here
    return touched


async def started_children(store: Store, workflow_id: str) -> list[str]:
    """The ids of the children ``workflow_id`` started, in the order it started them."""
    history = await store.load_history(workflow_id)
    return [
        json.loads(operation.result)
        for _, operation in sorted(history.operations.items())
        if operation.kind is OperationKind.CHILD
        and operation.status is OperationStatus.COMPLETED
        and operation.result is not None
    ]


async def workflow_ended(
    store: Store,
    workflow_id: str,
    status: WorkflowStatus,
    *,
    now: int,
    may_have_parent: bool = True,
) -> tuple[str | None, list[str]]:
    """What follows a workflow's end: its parent is told, and a cancelled workflow's
    children are cancelled. Operator tools that change a status without an app call it
    too.

    Args:
        store: The store.
        workflow_id: The workflow that ended.
        status: Its terminal status.
        now: The time.
        may_have_parent: False skips looking for a parent: the workflow was started as
            a top-level workflow by the process that ran it to its end (a parent that
            later reused its id for a child is woken by its own recheck instead).

    Returns:
        The parent told (or None), and the children whose cancellation was requested.
    """
    parent = await notify_parent(store, workflow_id, now=now) if may_have_parent else None
    cancelled = []
    if status is WorkflowStatus.CANCELLED:
        cancelled = await cancel_children(store, workflow_id, now=now)
    return parent, cancelled


class ChildWorkflows:
    """The app's side of child workflows: used by workflow contexts to create and read
    children, and by the runner and the app when a workflow ends.

    Args:
        store: The app's store.
        clock: The app's clock.
        notifier: Wakes in-process waiters and the claim loop.
        registry: The app's workflows (a child must be registered in the parent's app).
        create: Creates a workflow like ``app.start`` does (launched here when this
            process is a worker), or like ``app.enqueue`` given a queue.
        queue_name: The name of a queue declared in the app (raises otherwise).
        interrupt: Interrupts runs of the given workflows in this process (cancelled).
    """

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        registry: Registry,
        create: CreateWorkflow,
        queue_name: Callable[[Queue | str], str],
        interrupt: Callable[[list[str]], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._notifier = notifier
        self.registry = registry
        self._create = create
        self.queue_name = queue_name
        self._interrupt = interrupt

    async def start(
        self,
        parent_id: str,
        definition: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        workflow_id: str,
        timeout: timedelta | float | None,
        queue: str | None = None,
        priority: int = 0,
    ) -> str:
        """Create the child (or find it: idempotent) and link it to its parent; a
        child put on ``queue`` runs when the queue's limits allow.

        Raises:
            WorkflowConflictError: the id is taken by another workflow or input.
            PayloadError: an argument cannot be stored.
        """
        child_id = await self._create(
            definition,
            args,
            kwargs,
            workflow_id,
            timeout,
            queue=queue,
            priority=priority,
            as_child=True,
        )
        await link_to_parent(self._store, child_id, parent_id, now=self._clock.now())
        if queue is not None:
            self._notifier.notify_work_due()
        return child_id

    async def cancel(self, workflow_id: str) -> None:
        """Cancel a child that is no longer needed (``ctx.map`` skipped it), as
        ``app.cancel`` does; nothing happens when it has ended already."""
        try:
            record = await self._store.request_cancel(
                workflow_id, compensate=False, now=self._clock.now()
            )
        except (WorkflowFinishedError, WorkflowNotFoundError):
            return
        self._interrupt([workflow_id])
        self._notifier.notify(workflow_id)
        self._notifier.notify_work_due()
        if record.status is WorkflowStatus.CANCELLED:
            await self.workflow_ended(workflow_id, WorkflowStatus.CANCELLED)

    async def get(self, child_id: str) -> WorkflowRecord | None:
        """The child's current record."""
        return await self._store.get_workflow(child_id)

    async def workflow_ended(
        self, workflow_id: str, status: WorkflowStatus, *, may_have_parent: bool = True
    ) -> None:
        """Called once a workflow has reached a terminal status: tell its parent (unless
        it cannot have one), and cancel its children when it was cancelled. Never
        raises (the parent's wait and the children's owners look again later)."""
        try:
            parent, cancelled = await workflow_ended(
                self._store,
                workflow_id,
                status,
                now=self._clock.now(),
                may_have_parent=may_have_parent,
            )
        except Exception:
            logger.exception(
                "after workflow %s ended %s, telling its parent or cancelling its children "
                "failed; they will notice on their next look",
                workflow_id,
                status,
            )
            return
        if cancelled:
            self._interrupt(cancelled)
        for changed_id in [*cancelled, *([] if parent is None else [parent])]:
            self._notifier.notify(changed_id)
        if parent is not None or cancelled:
            self._notifier.notify_work_due()

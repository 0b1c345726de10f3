"""Operator actions that change a store: signal, cancel, resume, fork, purge.

Each goes through the :class:`~durably.store.Store` protocol only, with the same
checks the engine makes, so that an operator can never put a workflow in a state the
engine would not.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

from durably import children
from durably.admin.inspection import get_workflow
from durably.codec import PayloadCodec
from durably.errors import DurablyError, InvalidTransitionError, WorkflowConflictError
from durably.identifiers import validate_identifier, validate_signal_name
from durably.models import (
    TERMINAL_STATUSES,
    Fence,
    OperationStatus,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.store.base import Store

#: Workflows an operator may resume: parked ones, and dead letters.
RESUMABLE_STATUSES = frozenset(
    {WorkflowStatus.PARKED, WorkflowStatus.FAILED, WorkflowStatus.COMPENSATION_FAILED}
)


def allowed_actions(status: WorkflowStatus) -> tuple[str, ...]:
    """The operator actions this module accepts for a workflow in ``status``, in the
    order a dashboard or a terminal UI shows them: ``"signal"`` and ``"cancel"`` until
    it has finished, ``"resume"`` when it is parked or a dead letter
    (:data:`RESUMABLE_STATUSES`), and ``"retry"`` (a fork from a step, which any
    workflow allows: from step 0 it runs everything again)."""
    actions: list[str] = []
    if not status.is_terminal:
        actions += ["signal", "cancel"]
    if status in RESUMABLE_STATUSES:
        actions.append("resume")
    actions.append("retry")
    return tuple(actions)


#: What ``durably purge`` deletes unless told otherwise: ends that need no attention.
#: FAILED and COMPENSATION_FAILED are kept unless named, so that no error that
#: nobody looked at disappears by default.
DEFAULT_PURGE_STATUSES = frozenset(
    {WorkflowStatus.COMPLETED, WorkflowStatus.COMPENSATED, WorkflowStatus.CANCELLED}
)


#: The owner of a fork while its history is copied (followed by host, pid, random).
FORK_OWNER_PREFIX = "durably-fork:"


class OperatorActionError(DurablyError):
    """The operator action cannot be applied to this workflow now; the message says why
    and what to do instead."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkResult:
    """A workflow forked from another one's recorded history."""

    source: WorkflowRecord
    fork: WorkflowRecord
    from_seq: int
    #: How many recorded operations the fork replays instead of running.
    copied: int
    #: How many of them are recorded failures (replay raises them again).
    copied_failures: int
    #: How many signals were sent to the fork again: those consumed by the operations
    #: that run again, and those not consumed yet.
    signals: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgePlan:
    """What a purge will delete: counted first, then deleted in batches."""

    finished_before: int
    statuses: frozenset[WorkflowStatus]
    #: How many workflows qualified when the plan was made.
    total: int
    #: The ``finished_before`` of each batch, ascending; the last is ``finished_before``.
    cutoffs: tuple[int, ...]


async def send_signal(
    store: Store,
    workflow_id: str,
    name: str,
    payload: object = None,
    *,
    dedup_key: str | None = None,
    now: int,
) -> tuple[SignalRecord, bool]:
    """Append a signal to a workflow's inbox, as ``Durably.send_signal`` does.

    The payload is stored as JSON; a wait with ``payload_type=`` decodes it into that
    type. A suspended workflow is made due at once; a worker resumes it.

    Returns:
        ``(signal, True)`` when appended; ``(existing, False)`` when ``dedup_key`` was
        already used for this workflow.

    Raises:
        WorkflowNotFoundError: unknown id.
        WorkflowFinishedError: the workflow has finished.
        PayloadError: the payload cannot be stored as JSON.
        ValueError: an empty or malformed id, name or key.
    """
    validate_identifier(workflow_id, "workflow_id")
    validate_signal_name(name)
    if dedup_key is not None:
        validate_identifier(dedup_key, "dedup_key")
    codec = PayloadCodec()
    encoded = codec.encode(payload, Any, what=f"the payload of signal {name!r}", verify=False)
    return await store.append_signal(
        workflow_id,
        name,
        encoded,
        serializer=codec.serializer_name,
        dedup_key=dedup_key,
        now=now,
    )


async def cancel_workflow(
    store: Store, workflow_id: str, *, compensate: bool = False, now: int
) -> WorkflowRecord:
    """Request a durable, cooperative cancellation (see ``Store.request_cancel``).

    An idle workflow is cancelled at once (or made due to run its compensations); a
    running one is stopped by its owner at its next heartbeat.

    Returns:
        The workflow right after the request.

    Raises:
        WorkflowNotFoundError: unknown id.
        WorkflowFinishedError: it already ended in another status.
    """
    validate_identifier(workflow_id, "workflow_id")
    record = await store.request_cancel(workflow_id, compensate=compensate, now=now)
    if record.status is WorkflowStatus.CANCELLED:  # its parent and children are told here
        await children.workflow_ended(store, workflow_id, record.status, now=now)
    return record


async def resume_workflow(store: Store, workflow_id: str, *, now: int) -> WorkflowRecord:
    """Make a PARKED, FAILED or COMPENSATION_FAILED workflow runnable again.

    Raises:
        WorkflowNotFoundError: unknown id.
        OperatorActionError: the workflow is in another status (see
            :meth:`durably.store.Store.resume_workflow` for what a resume changes).
    """
    record = await get_workflow(store, validate_identifier(workflow_id, "workflow_id"))
    if record.status not in RESUMABLE_STATUSES:
        raise OperatorActionError(
            f"workflow {workflow_id!r} is {record.status}: only a PARKED, FAILED or "
            f"COMPENSATION_FAILED workflow can be resumed"
            + (
                "; to run it again from one of its steps, fork it with "
                f"`durably retry {workflow_id} --from-step N`"
                if record.status in TERMINAL_STATUSES
                else " (it is not stopped: see `durably doctor " + workflow_id + "`)"
            ),
            workflow_id=workflow_id,
        )
    try:
        return await store.resume_workflow(workflow_id, now=now)
    except InvalidTransitionError as error:  # it moved on since we looked
        raise OperatorActionError(str(error), workflow_id=workflow_id) from error


async def fork_workflow(
    store: Store,
    workflow_id: str,
    *,
    from_seq: int,
    new_workflow_id: str | None = None,
    now: int,
) -> ForkResult:
    """Start a new workflow (same name, version, input and queue) whose history is the
    source's recorded body operations before ``from_seq``: it replays those and runs
    the rest.

    The fork is inserted ``SUSPENDED`` with no wake-up and owned by this call, so that
    no worker can claim it while its history is copied; every copy is a fenced write.
    Only then is it made ``RUNNING`` and released, which makes it claimable. An
    interrupted fork stays suspended (its ``wait_reason`` says so) and never runs on a
    partial history. The signals that the operations running again had consumed, and
    those still unconsumed, are sent to the fork again, in their order. The source is
    only read.

    Args:
        store: The store.
        workflow_id: The workflow to fork.
        from_seq: The first operation that runs again (0 runs everything again).
        new_workflow_id: The fork's id (default: ``<id>-fork-<random>``).
        now: The current time.

    Raises:
        WorkflowNotFoundError: unknown id.
        WorkflowConflictError: ``new_workflow_id`` is taken.
        ValueError: ``from_seq`` is outside ``0 .. last recorded + 1``, or an id is
            malformed.
        LeaseLostError: something claimed the fork while it was being copied.
    """
    source = await get_workflow(store, validate_identifier(workflow_id, "workflow_id"))
    history = await store.load_history(workflow_id)
    body = [history.operations[seq] for seq in sorted(history.operations) if seq >= 0]
    last = body[-1].seq if body else -1
    if not 0 <= from_seq <= last + 1:
        raise ValueError(
            f"workflow {workflow_id!r} has recorded operations #0 to #{last}: the step to "
            f"run again must be between 0 and {last + 1} (see `durably show {workflow_id}`)"
        )
    fork_id = validate_identifier(new_workflow_id or _fork_id(workflow_id), "workflow_id")
    owner = f"{FORK_OWNER_PREFIX}{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
    deadline = None if source.deadline_at is None else now + source.deadline_at - source.created_at
    draft = WorkflowRecord(
        workflow_id=fork_id,
        workflow_name=source.workflow_name,
        status=WorkflowStatus.SUSPENDED,
        version=source.version,
        input=source.input,
        serializer=source.serializer,
        owner=owner,
        fence=1,
        deadline_at=deadline,
        queue_name=source.queue_name,
        priority=source.priority,
        wait_reason=(
            f"being forked from {workflow_id!r} at operation #{from_seq}; if it stays so, "
            f"the fork was interrupted: cancel it and fork again"
        ),
        created_at=now,
        updated_at=now,
    )
    _, created = await store.create_workflow(draft)
    if not created:
        raise WorkflowConflictError(
            f"workflow id {fork_id!r} is already taken; choose another --new-id",
            workflow_id=fork_id,
        )
    fence = Fence(workflow_id=fork_id, owner=owner, fence=1)
    copied = [operation for operation in body if operation.seq < from_seq]
    for operation in copied:
        await store.record_operation(fence, dataclasses.replace(operation, workflow_id=fork_id))
    await store.set_workflow_status(fence, WorkflowStatus.RUNNING, now=now)
    # The operations that run again get the signals they consumed, and the fork gets
    # those nobody consumed yet, in the order they were sent.
    resent = [
        signal
        for signal in await store.list_signals(workflow_id)
        if signal.consumed_seq is None or signal.consumed_seq >= from_seq
    ]
    for signal in resent:
        await store.append_signal(
            fork_id,
            signal.name,
            signal.payload,
            serializer=signal.serializer,
            dedup_key=signal.dedup_key,
            now=now,
        )
    await store.release_workflows(owner=owner)
    return ForkResult(
        source=source,
        fork=await get_workflow(store, fork_id),
        from_seq=from_seq,
        copied=len(copied),
        copied_failures=sum(op.status is OperationStatus.FAILED for op in copied),
        signals=len(resent),
    )


def _fork_id(workflow_id: str) -> str:
    suffix = f"-fork-{os.urandom(3).hex()}"
    return workflow_id[: 256 - len(suffix)] + suffix


async def plan_purge(
    store: Store,
    *,
    finished_before: int,
    statuses: Collection[WorkflowStatus] = DEFAULT_PURGE_STATUSES,
    batch_size: int = 500,
) -> PurgePlan:
    """Count the workflows a purge would delete and split them into batches.

    Raises:
        ValueError: a status is not terminal (only finished workflows are purged), or
            ``batch_size`` is below 1.
    """
    wanted = frozenset(statuses)
    unfinished = sorted(wanted - TERMINAL_STATUSES)
    if unfinished:
        raise ValueError(
            f"only finished workflows can be purged; {', '.join(unfinished)} is not a "
            f"final status (final: {', '.join(sorted(TERMINAL_STATUSES))})"
        )
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, not {batch_size}")
    finished: list[int] = []
    page_size = 1000
    offset = 0
    while wanted:
        # A workflow finishes after it is created: created_before narrows the scan.
        page = await store.list_workflows(
            statuses=wanted, created_before=finished_before, limit=page_size, offset=offset
        )
        finished.extend(
            record.finished_at
            for record in page
            if record.finished_at is not None and record.finished_at < finished_before
        )
        if len(page) < page_size:
            break
        offset += page_size
    finished.sort()
    cutoffs = [finished[index] + 1 for index in range(batch_size - 1, len(finished), batch_size)]
    if not cutoffs or cutoffs[-1] < finished_before:
        cutoffs.append(finished_before)
    return PurgePlan(
        finished_before=finished_before,
        statuses=wanted,
        total=len(finished),
        cutoffs=tuple(min(cutoff, finished_before) for cutoff in cutoffs),
    )


async def purge(store: Store, plan: PurgePlan) -> AsyncIterator[int]:
    """Delete what ``plan`` counted, one batch per store call; yield each batch's count.

    Each batch is the store's own ``purge_workflows`` (one statement that checks the
    status and finish time itself), so a workflow that changed since the plan was
    made is never deleted by mistake.
    """
    for cutoff in plan.cutoffs:
        yield await store.purge_workflows(finished_before=cutoff, statuses=plan.statuses)

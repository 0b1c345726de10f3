"""What every store decides the same way, and the errors it raises, worded once.

Stores differ in how they find out that a call must be refused, never in what the
caller is told, so that an operator reads the same message whatever the backend.
"""

from __future__ import annotations

from typing import Literal

from durably.errors import (
    InvalidTransitionError,
    LeaseLostError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
)
from durably.models import (
    RESUME_TRANSITIONS,
    Fence,
    QueueLimits,
    WorkflowRecord,
    WorkflowStatus,
)

#: Statuses in which a cancellation request acts at once when no live lease is held:
#: without compensation the workflow becomes CANCELLED, with it the workflow is made
#: due so that an executor claims it and compensates. PARKED is included although
#: ``store/base.py`` names only PENDING and SUSPENDED: a parked workflow waits for an
#: operator, and cancelling it is such an action; otherwise the request would be a
#: flag that nobody ever reads.
CANCEL_AT_ONCE_STATUSES = frozenset(
    {WorkflowStatus.PENDING, WorkflowStatus.SUSPENDED, WorkflowStatus.PARKED}
)


def lease_lost(fence: Fence, reason: str | None = None) -> LeaseLostError:
    """The fenced write of ``fence`` was refused; ``reason`` says why when known."""
    why = reason or "another executor claimed it, or its lease was released"
    return LeaseLostError(
        f"workflow {fence.workflow_id!r} is no longer owned by executor {fence.owner!r} "
        f"with fence {fence.fence} ({why}); nothing was written and this executor must "
        f"stop running it",
        workflow_id=fence.workflow_id,
    )


def transition_refused(
    fence: Fence, current: WorkflowStatus, new: WorkflowStatus
) -> LeaseLostError:
    """A status change that the state machine does not allow from ``current``."""
    return lease_lost(fence, f"it is {current}, which cannot move to {new}")


def made_by_fence(record: WorkflowRecord, fence: Fence, wanted: WorkflowStatus) -> bool:
    """Whether ``record`` already shows the change to ``wanted`` that ``fence`` asks
    for, where that change released the workflow: asked again (a statement retried
    after its reply was lost, perhaps after it committed), it finds the change made
    but no longer matches its owner, which the change cleared. The same fence means
    nobody claimed it since, so the status is the fence's own change (or an operator's
    cancellation of it while idle, which leaves it where the fence wanted it)."""
    releasing = wanted.is_terminal or wanted in (WorkflowStatus.PARKED, WorkflowStatus.SUSPENDED)
    return (
        releasing
        and record.status is wanted
        and record.owner is None
        and record.fence == fence.fence
    )


def made_or_refused(
    record: WorkflowRecord | None, fence: Fence, wanted: WorkflowStatus
) -> WorkflowRecord:
    """After a fenced change to ``wanted`` matched no row: ``record`` (the row as it
    is now, None when there is none) if it shows that very change made by ``fence``
    (see :func:`made_by_fence`); otherwise the refusal, raised.

    Raises:
        LeaseLostError: the workflow is gone, another fence owns it, or the state
            machine does not allow the change from its current status.
    """
    if record is None:
        raise lease_lost(fence, "the workflow does not exist")
    if made_by_fence(record, fence, wanted):
        return record
    if record.owner != fence.owner or record.fence != fence.fence:
        raise lease_lost(fence)
    raise transition_refused(fence, record.status, wanted)


def workflow_not_found(workflow_id: str) -> WorkflowNotFoundError:
    """No workflow has this id."""
    return WorkflowNotFoundError(
        f"no workflow with id {workflow_id!r} exists in this store; check the id "
        f"(it may have been purged)",
        workflow_id=workflow_id,
    )


def workflow_finished(
    workflow_id: str, status: WorkflowStatus, action: str
) -> WorkflowFinishedError:
    """The workflow is terminal, so ``action`` (e.g. "cancel it") is impossible."""
    return WorkflowFinishedError(
        f"workflow {workflow_id!r} already ended with status {status}; cannot {action}",
        workflow_id=workflow_id,
        status=str(status),
    )


def require_same_workflow(fence: Fence, workflow_id: str) -> None:
    """Refuse a record of another workflow than the one ``fence`` owns (a caller bug
    that would otherwise write into the wrong history)."""
    if workflow_id != fence.workflow_id:
        raise ValueError(
            f"a record of workflow {workflow_id!r} cannot be written with the fence of "
            f"workflow {fence.workflow_id!r}"
        )


CancelAction = Literal["flag_cancel", "wake_to_compensate", "cancel_idle_workflow"]


def cancel_action(record: WorkflowRecord, *, compensate: bool, now: int) -> CancelAction | None:
    """What a cancellation request does to ``record`` (None: it is cancelled already).

    A workflow someone runs (a live lease) or that is RUNNING/COMPENSATING is flagged
    for its owner; an idle one is cancelled at once, or made due to compensate.

    Raises:
        WorkflowFinishedError: the workflow ended otherwise.
    """
    if record.status is WorkflowStatus.CANCELLED:
        return None
    if record.status.is_terminal:
        raise workflow_finished(record.workflow_id, record.status, "cancel it")
    has_live_lease = (
        record.owner is not None and record.lease_until is not None and record.lease_until >= now
    )
    if record.status not in CANCEL_AT_ONCE_STATUSES or has_live_lease:
        return "flag_cancel"
    if compensate or record.compensate_on_cancel:
        return "wake_to_compensate"
    return "cancel_idle_workflow"


def queue_allowance(
    queue: QueueLimits, *, limit: int, running: int, running_here: int, started: int
) -> int:
    """How many more of ``queue``'s workflows one claim may take, given how many run
    (everywhere, and on the claiming worker) and how many started in the rate window."""
    allowed = limit
    if queue.concurrency is not None:
        allowed = min(allowed, queue.concurrency - running)
    if queue.worker_concurrency is not None:
        allowed = min(allowed, queue.worker_concurrency - running_here)
    if queue.rate_limit is not None:
        allowed = min(allowed, queue.rate_limit - started)
    return max(allowed, 0)


def resume_target(record: WorkflowRecord) -> WorkflowStatus:
    """The status an operator's resume gives ``record``.

    Raises:
        InvalidTransitionError: it is not stopped in a resumable status.
    """
    target = RESUME_TRANSITIONS.get(record.status)
    if target is None:
        raise InvalidTransitionError(
            f"workflow {record.workflow_id!r} is {record.status}; only a "
            f"{', '.join(sorted(RESUME_TRANSITIONS))} workflow can be resumed"
        )
    return target

"""Records and small helpers shared by the store contract tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from durably.models import (
    AttemptRecord,
    Fence,
    OperationKind,
    OperationRecord,
    OperationStatus,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.store.base import Store

#: The contract's "now": an arbitrary instant (2027-01-15) in epoch microseconds.
NOW = 1_800_000_000_000_000
SECOND = 1_000_000
#: How long the leases taken by :func:`claimed` last.
LEASE = 30 * SECOND
#: Text that breaks naive SQL building: quotes, a statement separator, a comment,
#: LIKE wildcards, a backslash, a newline and non-ASCII characters.
TRICKY = "o'rder\"; DROP TABLE workflows; -- 100%_\\\nÅ✓"


def workflow(workflow_id: str = "w-1", **fields: Any) -> WorkflowRecord:
    """A PENDING, unowned workflow named "checkout" created at NOW; override any field."""
    record = WorkflowRecord(
        workflow_id=workflow_id,
        workflow_name="checkout",
        status=WorkflowStatus.PENDING,
        version="v1",
        input='{"n": 1}',
        created_at=NOW,
        updated_at=NOW,
    )
    return dataclasses.replace(record, **fields)


def owned(workflow_id: str = "w-1", owner: str = "exec-a", **fields: Any) -> WorkflowRecord:
    """A RUNNING workflow held by ``owner`` with fence 1 and a live lease."""
    values: dict[str, Any] = {
        "status": WorkflowStatus.RUNNING,
        "owner": owner,
        "fence": 1,
        "lease_until": NOW + LEASE,
    }
    values.update(fields)
    return workflow(workflow_id, **values)


def fence_of(record: WorkflowRecord) -> Fence:
    """The fence that the current owner of ``record`` writes with."""
    assert record.owner is not None, f"{record.workflow_id} has no owner"
    return Fence(workflow_id=record.workflow_id, owner=record.owner, fence=record.fence)


def operation(workflow_id: str = "w-1", seq: int = 0, **fields: Any) -> OperationRecord:
    """A COMPLETED step recorded at ``seq``; override any field."""
    record = OperationRecord(
        workflow_id=workflow_id,
        seq=seq,
        kind=OperationKind.STEP,
        name=f"step-{seq}",
        status=OperationStatus.COMPLETED,
        result="42",
        started_at=NOW,
        finished_at=NOW + 10,
    )
    return dataclasses.replace(record, **fields)


def signal_wait(workflow_id: str = "w-1", seq: int = 0, name: str = "go") -> OperationRecord:
    """The operation that a wait for signal ``name`` records when it consumes one."""
    return operation(
        workflow_id,
        seq,
        kind=OperationKind.SIGNAL,
        name=name,
        status=OperationStatus.WAITING,
        result=None,
        finished_at=NOW + 20,
    )


def attempt(
    workflow_id: str = "w-1", seq: int = 0, number: int = 1, **fields: Any
) -> AttemptRecord:
    """A failed attempt ``number`` of the step at ``seq``; override any field."""
    record = AttemptRecord(
        workflow_id=workflow_id,
        seq=seq,
        attempt=number,
        error='{"type": "ValueError", "message": "boom"}',
        started_at=NOW,
        finished_at=NOW + 1,
        next_attempt_at=NOW + SECOND,
    )
    return dataclasses.replace(record, **fields)


async def claimed(
    store: Store, workflow_id: str = "w-1", owner: str = "exec-a", **fields: Any
) -> Fence:
    """Create a PENDING workflow, claim it at NOW for ``owner`` and return its fence."""
    await store.create_workflow(workflow(workflow_id, **fields))
    record = await store.claim_workflow(workflow_id, owner=owner, now=NOW, lease_until=NOW + LEASE)
    assert record is not None, f"{workflow_id} could not be claimed"
    return fence_of(record)


async def send(
    store: Store,
    workflow_id: str = "w-1",
    name: str = "go",
    payload: str | None = '"payload"',
    *,
    dedup_key: str | None = None,
    now: int = NOW,
) -> tuple[SignalRecord, bool]:
    """Append a JSON signal to the workflow's inbox."""
    return await store.append_signal(
        workflow_id, name, payload, serializer="json", dedup_key=dedup_key, now=now
    )


async def stored(store: Store, workflow_id: str = "w-1") -> WorkflowRecord:
    """The stored workflow, which must exist."""
    record = await store.get_workflow(workflow_id)
    assert record is not None, f"{workflow_id} is not stored"
    return record


def ids(records: list[WorkflowRecord]) -> list[str]:
    """The ids of ``records``, in order."""
    return [record.workflow_id for record in records]

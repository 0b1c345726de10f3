"""Rows to records and records to parameters: the boundary of the SQL stores.

Statuses are stored as their names, booleans as 0/1, timestamps as integers. A row
that cannot become a record raises :class:`~durably.errors.CorruptRecordError`
naming it, instead of a bare ``ValueError`` from deep inside the engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from durably.errors import CorruptRecordError
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

Params = dict[str, Any]


def fence_params(fence: Fence) -> Params:
    """The parameters every fenced statement checks."""
    return {"workflow_id": fence.workflow_id, "owner": fence.owner, "fence": fence.fence}


#: The parameters of insert_workflow, in the order of :func:`workflow_values`. The
#: last :data:`UNSET_AT_START` are None for a workflow as the engine starts it (no
#: timeout, no queue, not run yet): the SQLite store then binds the others only (see
#: ``_INSERT_WORKFLOW`` there).
WORKFLOW_PARAMS = (
    "workflow_id",
    "workflow_name",
    "status",
    "version",
    "input",
    "serializer",
    "owner",
    "fence",
    "lease_until",
    "cancel_requested",
    "compensate_on_cancel",
    "recovery_attempts",
    "created_at",
    "updated_at",
    "priority",
    "started_at",
    "deadline_at",
    "queue_name",
    "result",
    "error",
    "wake_at",
    "wait_reason",
    "finished_at",
)

#: How many of :data:`WORKFLOW_PARAMS`, at its end, a started workflow leaves None.
UNSET_AT_START = 7


def workflow_values(record: WorkflowRecord) -> tuple[Any, ...]:
    """Parameters of insert_workflow, in the order of :data:`WORKFLOW_PARAMS`."""
    return (
        record.workflow_id,
        record.workflow_name,
        record.status._value_,
        record.version,
        record.input,
        record.serializer,
        record.owner,
        record.fence,
        record.lease_until,
        int(record.cancel_requested),
        int(record.compensate_on_cancel),
        record.recovery_attempts,
        record.created_at,
        record.updated_at,
        record.priority,
        record.started_at,
        record.deadline_at,
        record.queue_name,
        record.result,
        record.error,
        record.wake_at,
        record.wait_reason,
        record.finished_at,
    )


def workflow_params(record: WorkflowRecord) -> Params:
    """Parameters of insert_workflow, by name."""
    return dict(zip(WORKFLOW_PARAMS, workflow_values(record), strict=True))


#: The parameters of record_operation, in the order of :func:`operation_values`. The
#: last two, ``error`` and ``wake_at``, are None for a completed step: the SQLite store
#: then binds the others only (see ``_RECORD_OPERATION`` there).
OPERATION_PARAMS = (
    "workflow_id",
    "owner",
    "fence",
    "seq",
    "kind",
    "name",
    "status",
    "result",
    "serializer",
    "attempts",
    "started_at",
    "finished_at",
    "error",
    "wake_at",
)


def operation_values(fence: Fence, operation: OperationRecord) -> tuple[Any, ...]:
    """Parameters of record_operation (the operation and the fence it is written with),
    in the order of :data:`OPERATION_PARAMS`: the checkpoint is the hot path, and a
    driver binds a tuple faster than it looks names up in a mapping."""
    return (
        fence.workflow_id,
        fence.owner,
        fence.fence,
        operation.seq,
        # ``_value_``: ``.value`` is a descriptor, several times slower.
        operation.kind._value_,
        operation.name,
        operation.status._value_,
        operation.result,
        operation.serializer,
        operation.attempts,
        operation.started_at,
        operation.finished_at,
        operation.error,
        operation.wake_at,
    )


def operation_params(fence: Fence, operation: OperationRecord) -> Params:
    """Parameters of record_operation, by name."""
    return dict(zip(OPERATION_PARAMS, operation_values(fence, operation), strict=True))


def attempt_params(fence: Fence, attempt: AttemptRecord) -> Params:
    """Parameters of record_attempt."""
    return {
        **fence_params(fence),
        "seq": attempt.seq,
        "attempt": attempt.attempt,
        "error": attempt.error,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "next_attempt_at": attempt.next_attempt_at,
    }


def _by_name(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """``row`` with its columns looked up by hashing. A ``sqlite3.Row`` finds a column
    by comparing the name with each column name in turn: about 1,800 instructions a
    lookup in a workflows row, 40,000 to read a whole record (callgrind); copying it
    into a dict first costs a tenth of that."""
    if isinstance(row, sqlite3.Row):
        return dict(zip(row.keys(), row, strict=True))
    return row


def workflow_from_row(row: Mapping[str, Any]) -> WorkflowRecord:
    """A workflows row as a record."""
    row = _by_name(row)
    try:
        return WorkflowRecord(
            workflow_id=row["workflow_id"],
            workflow_name=row["workflow_name"],
            status=WorkflowStatus(row["status"]),
            version=row["version"],
            input=row["input"],
            result=row["result"],
            error=row["error"],
            serializer=row["serializer"],
            owner=row["owner"],
            fence=row["fence"],
            lease_until=row["lease_until"],
            wake_at=row["wake_at"],
            deadline_at=row["deadline_at"],
            wait_reason=row["wait_reason"],
            cancel_requested=bool(row["cancel_requested"]),
            compensate_on_cancel=bool(row["compensate_on_cancel"]),
            recovery_attempts=row["recovery_attempts"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            queue_name=row["queue_name"],
            priority=row["priority"],
            started_at=row["started_at"],
        )
    except (ValueError, IndexError) as error:
        raise _corrupt("workflow", row, error) from error


def operation_from_row(row: Mapping[str, Any]) -> OperationRecord:
    """An operations row as a record."""
    row = _by_name(row)
    try:
        return OperationRecord(
            workflow_id=row["workflow_id"],
            seq=row["seq"],
            kind=OperationKind(row["kind"]),
            name=row["name"],
            status=OperationStatus(row["status"]),
            result=row["result"],
            error=row["error"],
            serializer=row["serializer"],
            attempts=row["attempts"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            wake_at=row["wake_at"],
        )
    except (ValueError, IndexError) as error:
        raise _corrupt(f"operation {row['seq']!r} of workflow", row, error) from error


def attempt_from_row(row: Mapping[str, Any]) -> AttemptRecord:
    """An attempts row as a record."""
    row = _by_name(row)
    return AttemptRecord(
        workflow_id=row["workflow_id"],
        seq=row["seq"],
        attempt=row["attempt"],
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        next_attempt_at=row["next_attempt_at"],
    )


def signal_from_row(row: Mapping[str, Any]) -> SignalRecord:
    """A signals row as a record."""
    row = _by_name(row)
    return SignalRecord(
        signal_id=row["signal_id"],
        workflow_id=row["workflow_id"],
        name=row["name"],
        payload=row["payload"],
        serializer=row["serializer"],
        dedup_key=row["dedup_key"],
        created_at=row["created_at"],
        consumed_seq=row["consumed_seq"],
        consumed_at=row["consumed_at"],
    )


def _corrupt(what: str, row: Mapping[str, Any], error: Exception) -> CorruptRecordError:
    workflow_id = row["workflow_id"]
    return CorruptRecordError(
        f"stored {what} {workflow_id!r} cannot be read ({error}); it is left untouched "
        f"for an operator (is the database shared with a newer durably?)",
        workflow_id=workflow_id,
    )


def resume_params(record: WorkflowRecord, target: WorkflowStatus, now: int) -> Params:
    """Parameters of the resume statements (see Store.resume_workflow)."""
    compensating = target is WorkflowStatus.COMPENSATING
    return {
        "workflow_id": record.workflow_id,
        "status": target.value,
        "from_status": record.status.value,
        "compensations": compensating,
        "keeps_error": compensating,
        "now": now,
    }


def consume_params(fence: Fence, operation: OperationRecord) -> Params:
    """Parameters of consume_signal: the wait's name and seq, and when it consumed."""
    return {
        **fence_params(fence),
        "name": operation.name,
        "seq": operation.seq,
        "consumed_at": (
            operation.started_at if operation.finished_at is None else operation.finished_at
        ),
    }

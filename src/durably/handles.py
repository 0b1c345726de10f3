"""What callers get back: a workflow's public description and a handle to follow it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from durably.models import (
    ErrorInfo,
    OperationKind,
    OperationRecord,
    OperationStatus,
    WorkflowRecord,
    WorkflowStatus,
    micros_to_datetime,
)

if TYPE_CHECKING:
    from durably.engine import Durably

R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowInfo:
    """A workflow as an operator or caller sees it."""

    workflow_id: str
    workflow_name: str
    status: WorkflowStatus
    version: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    error: ErrorInfo | None
    wait_reason: str | None
    wake_at: datetime | None
    deadline_at: datetime | None
    owner: str | None
    recovery_attempts: int
    cancel_requested: bool
    input_json: str | None
    result_json: str | None
    #: The queue it was enqueued on (None: started directly).
    queue: str | None = None

    @classmethod
    def from_record(cls, record: WorkflowRecord) -> WorkflowInfo:
        """Build from a stored record."""
        return cls(
            workflow_id=record.workflow_id,
            workflow_name=record.workflow_name,
            status=record.status,
            version=record.version,
            created_at=micros_to_datetime(record.created_at),
            updated_at=micros_to_datetime(record.updated_at),
            finished_at=_moment(record.finished_at),
            error=record.error_info,
            wait_reason=record.wait_reason,
            wake_at=_moment(record.wake_at),
            deadline_at=_moment(record.deadline_at),
            owner=record.owner,
            recovery_attempts=record.recovery_attempts,
            cancel_requested=record.cancel_requested,
            input_json=record.input if record.serializer == "json" else None,
            result_json=record.result if record.serializer == "json" else None,
            queue=record.queue_name,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointInfo:
    """One durable operation a workflow recorded (a step's result, a sleep, a signal
    wait, a compensation...), as a caller sees it.

    Body operations are numbered from 0 in the order the workflow made them; its
    compensations have negative numbers (-1 for the first registered)."""

    seq: int
    kind: OperationKind
    name: str
    #: ``COMPLETED``, ``FAILED`` or ``WAITING`` (a sleep or signal wait under way).
    status: OperationStatus
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    #: When a sleep or a signal wait's timeout ends.
    wake_at: datetime | None
    error: ErrorInfo | None
    #: The recorded result as JSON (None when it is stored with another serializer).
    result_json: str | None

    @classmethod
    def from_record(cls, record: OperationRecord) -> CheckpointInfo:
        """Build from a stored record."""
        return cls(
            seq=record.seq,
            kind=record.kind,
            name=record.name,
            status=record.status,
            attempts=record.attempts,
            started_at=micros_to_datetime(record.started_at),
            finished_at=_moment(record.finished_at),
            wake_at=_moment(record.wake_at),
            error=record.error_info,
            result_json=record.result if record.serializer == "json" else None,
        )


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else micros_to_datetime(micros)


class WorkflowHandle(Generic[R]):
    """A reference to a started workflow, usable from any process sharing the store."""

    def __init__(self, app: Durably, workflow_id: str) -> None:
        self._app = app
        self.workflow_id = workflow_id

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"

    async def result(self, *, timeout: timedelta | float | None = None) -> R:
        """Wait for the workflow to finish and return its result.

        Raises:
            WorkflowFailedError: it ended in another status than COMPLETED, or is PARKED
                (the original error is attached as ``__cause__`` when it can be rebuilt).
            TimeoutError: ``timeout`` passed first.
        """
        value: Any = await self._app.wait_for_result(self.workflow_id, timeout=timeout)
        return value  # type: ignore[no-any-return]

    async def info(self) -> WorkflowInfo:
        """The workflow's current description."""
        return await self._app.get_workflow(self.workflow_id)

    async def status(self) -> WorkflowStatus:
        """The workflow's current status."""
        return (await self.info()).status

    async def send_signal(
        self, name: str, payload: object = None, *, dedup_key: str | None = None
    ) -> bool:
        """Send a signal to the workflow (see :meth:`Durably.send_signal`)."""
        return await self._app.send_signal(self.workflow_id, name, payload, dedup_key=dedup_key)

    async def cancel(self, *, compensate: bool = False) -> WorkflowStatus:
        """Cancel the workflow (see :meth:`Durably.cancel`)."""
        return await self._app.cancel(self.workflow_id, compensate=compensate)

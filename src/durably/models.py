"""Records that cross the store boundary, and the status state machine.

Rows become these frozen records at the store boundary; no dicts travel between
layers. Timestamps are integer UTC epoch microseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from durably._fast_init import fast_init


class WorkflowStatus(StrEnum):
    """Where a workflow is in its life. Stored as these upper-case strings."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    CANCELLED = "CANCELLED"
    PARKED = "PARKED"

    @property
    def is_terminal(self) -> bool:
        """True when the workflow has ended and only an operator action changes it."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        WorkflowStatus.COMPLETED,
        WorkflowStatus.FAILED,
        WorkflowStatus.COMPENSATED,
        WorkflowStatus.COMPENSATION_FAILED,
        WorkflowStatus.CANCELLED,
    }
)

#: Statuses in which an executor may hold a lease while running the workflow.
LEASED_STATUSES = frozenset(
    {WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING}
)

#: Every status change the engine may make (operators' resume/retry are separate).
ALLOWED_TRANSITIONS: dict[WorkflowStatus, frozenset[WorkflowStatus]] = {
    WorkflowStatus.PENDING: frozenset(
        {WorkflowStatus.RUNNING, WorkflowStatus.CANCELLED, WorkflowStatus.PARKED}
    ),
    WorkflowStatus.RUNNING: frozenset(
        {
            WorkflowStatus.SUSPENDED,
            WorkflowStatus.COMPLETED,
            WorkflowStatus.FAILED,
            WorkflowStatus.COMPENSATING,
            WorkflowStatus.CANCELLED,
            WorkflowStatus.PARKED,
        }
    ),
    WorkflowStatus.SUSPENDED: frozenset(
        {WorkflowStatus.RUNNING, WorkflowStatus.CANCELLED, WorkflowStatus.PARKED}
    ),
    WorkflowStatus.COMPENSATING: frozenset(
        {
            WorkflowStatus.COMPENSATED,
            WorkflowStatus.COMPENSATION_FAILED,
            WorkflowStatus.CANCELLED,
            WorkflowStatus.PARKED,
        }
    ),
    WorkflowStatus.PARKED: frozenset(),
    WorkflowStatus.COMPLETED: frozenset(),
    WorkflowStatus.FAILED: frozenset(),
    WorkflowStatus.COMPENSATED: frozenset(),
    WorkflowStatus.COMPENSATION_FAILED: frozenset(),
    WorkflowStatus.CANCELLED: frozenset(),
}


def is_allowed_transition(current: WorkflowStatus, new: WorkflowStatus) -> bool:
    """Whether the engine may move a workflow from ``current`` to ``new``."""
    return current == new or new in ALLOWED_TRANSITIONS[current]


#: The operator's way out of a stop: ``resume`` moves a workflow from each key to its
#: value (outside the engine's state machine, which never leaves these statuses).
RESUME_TRANSITIONS: dict[WorkflowStatus, WorkflowStatus] = {
    WorkflowStatus.PARKED: WorkflowStatus.PENDING,
    WorkflowStatus.FAILED: WorkflowStatus.PENDING,
    WorkflowStatus.COMPENSATION_FAILED: WorkflowStatus.COMPENSATING,
}


def allowed_sources(new: WorkflowStatus) -> frozenset[WorkflowStatus]:
    """The statuses from which the engine may move a workflow to ``new``."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if new in targets)


class OperationKind(StrEnum):
    """The kind of a recorded durable operation."""

    STEP = "STEP"
    SLEEP = "SLEEP"
    SIGNAL = "SIGNAL"
    NOW = "NOW"
    RANDOM = "RANDOM"
    UUID = "UUID"
    COMPENSATION = "COMPENSATION"
    #: A marker recorded by ``ctx.patched(change_id)`` on a live run: this workflow
    #: took the new code path of that change (its name is the change id).
    PATCH = "PATCH"
    #: ``ctx.set_event(key, value)``: the name is the key; the latest one per key is
    #: what ``app.get_event`` returns.
    EVENT = "EVENT"
    #: ``ctx.write_stream(key, value)``: one entry of the stream named by the key.
    STREAM = "STREAM"
    #: ``ctx.close_stream(key)``: the stream's end; readers stop here.
    STREAM_CLOSE = "STREAM_CLOSE"
    #: ``ctx.start_child(workflow, ...)``: the name is the child workflow's name, the
    #: result the child's id.
    CHILD = "CHILD"
    #: Awaiting a child's result (``handle.result()``): the name is the child's id;
    #: the child's result, or its status and error when it did not complete.
    CHILD_RESULT = "CHILD_RESULT"
    #: The outcome of ``ctx.map``: which items it settled before its policy decided.
    MAP = "MAP"


#: Operations that readers outside the workflow wait for (``app.get_event``,
#: ``app.read_stream``): recording one also wakes readers in other processes.
PUBLISHED_KINDS = frozenset({OperationKind.EVENT, OperationKind.STREAM, OperationKind.STREAM_CLOSE})


class OperationStatus(StrEnum):
    """The state of a recorded operation."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    WAITING = "WAITING"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """A recorded error: its type, message and traceback, as stored."""

    type: str
    message: str
    traceback: str | None = None
    module: str | None = None

    def to_json(self) -> str:
        """Encode for storage."""
        return json.dumps(
            {
                "type": self.type,
                "module": self.module,
                "message": self.message,
                "traceback": self.traceback,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ErrorInfo:
        """Decode a stored error; unreadable text becomes an error describing itself."""
        try:
            data = json.loads(text)
            return cls(
                type=str(data["type"]),
                module=data.get("module"),
                message=str(data["message"]),
                traceback=data.get("traceback"),
            )
        except (ValueError, KeyError, TypeError):
            return cls(type="CorruptRecordError", message=f"unreadable stored error: {text!r}")


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRecord:
    """One workflow as stored: identity, status, payloads and ownership."""

    workflow_id: str
    workflow_name: str
    status: WorkflowStatus
    version: str = ""
    input: str | None = None
    result: str | None = None
    error: str | None = None
    serializer: str = "json"
    owner: str | None = None
    fence: int = 0
    lease_until: int | None = None
    wake_at: int | None = None
    deadline_at: int | None = None
    wait_reason: str | None = None
    cancel_requested: bool = False
    compensate_on_cancel: bool = False
    recovery_attempts: int = 0
    created_at: int = 0
    updated_at: int = 0
    finished_at: int | None = None
    #: The queue it was enqueued on (None: claimed without queue limits).
    queue_name: str | None = None
    #: Among queued workflows, higher priorities are claimed first.
    priority: int = 0
    #: When it was first claimed (rate limits count these).
    started_at: int | None = None

    @property
    def error_info(self) -> ErrorInfo | None:
        """The recorded error, decoded."""
        return None if self.error is None else ErrorInfo.from_json(self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    """The limits a claim of a queue's workflows obeys (durations in microseconds).

    ``concurrency`` bounds the queue's workflows running at once across all workers
    (claimed, with a live lease); ``worker_concurrency`` those run by the claiming
    worker; ``rate_limit`` the workflows started (first claimed) in any window of
    ``rate_period``. None means unlimited.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: int = 1_000_000


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OperationRecord:
    """The recorded outcome of one durable operation at (workflow_id, seq).

    Body operations have ``seq >= 0``. Compensations are recorded at negative
    sequence numbers: ``-1`` for the first registered compensation, ``-2`` for the
    second, and so on, so that replay finds them whatever order they ran in.
    """

    workflow_id: str
    seq: int
    kind: OperationKind
    name: str
    status: OperationStatus
    result: str | None = None
    error: str | None = None
    serializer: str = "json"
    attempts: int = 1
    started_at: int = 0
    finished_at: int | None = None
    wake_at: int | None = None

    @property
    def error_info(self) -> ErrorInfo | None:
        """The recorded error, decoded."""
        return None if self.error is None else ErrorInfo.from_json(self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """A failed attempt of a step or compensation, kept for the retry budget and audit."""

    workflow_id: str
    seq: int
    attempt: int
    error: str
    started_at: int
    finished_at: int
    next_attempt_at: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalRecord:
    """A signal in a workflow's inbox."""

    signal_id: int
    workflow_id: str
    name: str
    payload: str | None
    serializer: str = "json"
    dedup_key: str | None = None
    created_at: int = 0
    consumed_seq: int | None = None
    consumed_at: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """Everything recorded for one workflow run, loaded once at the start of a run."""

    operations: dict[int, OperationRecord] = field(default_factory=dict)
    attempts: dict[int, list[AttemptRecord]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fence:
    """Proof of ownership: writes commit only while (owner, fence) still match the row."""

    workflow_id: str
    owner: str
    fence: int


def micros_to_datetime(micros: int) -> datetime:
    """Convert stored epoch microseconds to an aware UTC datetime."""
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def datetime_to_micros(moment: datetime) -> int:
    """Convert an aware datetime to epoch microseconds (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

"""Reading a store as an operator: pages of workflows, and one workflow's timeline.

Nothing here writes. Payloads are shown as stored: JSON payloads as JSON values,
payloads of another serializer (pickle) only by size, never decoded.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from durably.errors import WorkflowNotFoundError
from durably.models import (
    AttemptRecord,
    ErrorInfo,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.store.base import Store

#: The status shown for a step that failed and waits for its next attempt: only its
#: failed attempts are recorded (its operation is recorded once it ends).
RETRYING = "RETRYING"

#: How many workflows a filter that the store cannot apply reads at a time.
_SCAN_BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowPage:
    """One page of a workflow listing."""

    workflows: tuple[WorkflowRecord, ...]
    offset: int
    limit: int
    #: The offset of the next page, or None when this page is the last.
    next_offset: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    """One durable operation of a workflow, as an operator reads it.

    Body operations have ``seq >= 0``; compensations have negative ``seq`` (see
    :class:`~durably.models.OperationRecord`).
    """

    seq: int
    #: None for a step being retried: only its failed attempts are recorded so far.
    kind: OperationKind | None
    name: str | None
    #: An :class:`~durably.models.OperationStatus` value, or :data:`RETRYING`.
    status: str
    attempts: int
    started_at: int | None
    finished_at: int | None
    #: A sleep's wake-up time, or a signal wait's timeout.
    wake_at: int | None
    result: str | None
    serializer: str
    error: ErrorInfo | None
    failed_attempts: tuple[AttemptRecord, ...]
    #: The signal this wait consumed (signal waits only).
    signal: SignalRecord | None

    @property
    def is_compensation(self) -> bool:
        """Whether this entry is a compensation (run when the workflow failed)."""
        return self.seq < 0

    @property
    def duration(self) -> int | None:
        """Microseconds from the first start to the end, when it has ended."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowDetail:
    """A workflow with its step timeline and its signal inbox."""

    workflow: WorkflowRecord
    timeline: tuple[TimelineEntry, ...]
    signals: tuple[SignalRecord, ...]

    @property
    def pending_signals(self) -> tuple[SignalRecord, ...]:
        """Signals in the inbox that no wait has consumed yet."""
        return tuple(signal for signal in self.signals if signal.consumed_seq is None)


async def list_workflows(
    store: Store,
    *,
    statuses: Collection[WorkflowStatus] | None = None,
    names: Collection[str] | None = None,
    queues: Collection[str] | None = None,
    created_after: int | None = None,
    created_before: int | None = None,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = True,
) -> WorkflowPage:
    """A page of workflows matching every given filter (None: no filter).

    The store filters by status, name and creation time; ``queues`` is applied here,
    over the store's pages (the store protocol has no queue filter yet), so a queue
    filter reads every workflow that passes the other filters up to the page's end.

    Raises:
        ValueError: ``limit`` is below 1 or ``offset`` below 0.
    """
    if limit < 1:
        raise ValueError(f"the page size must be at least 1, not {limit}")
    if offset < 0:
        raise ValueError(f"the offset must not be negative, not {offset}")
    if queues is None:
        records = await store.list_workflows(
            statuses=statuses,
            names=names,
            created_after=created_after,
            created_before=created_before,
            limit=limit + 1,
            offset=offset,
            newest_first=newest_first,
        )
    else:
        wanted = frozenset(queues)
        records = []
        skipped = 0
        scanned = 0
        while len(records) <= limit:
            batch = await store.list_workflows(
                statuses=statuses,
                names=names,
                created_after=created_after,
                created_before=created_before,
                limit=_SCAN_BATCH,
                offset=scanned,
                newest_first=newest_first,
            )
            scanned += len(batch)
            for record in batch:
                if record.queue_name not in wanted:
                    continue
                if skipped < offset:
                    skipped += 1
                else:
                    records.append(record)
            if len(batch) < _SCAN_BATCH:
                break
    return WorkflowPage(
        workflows=tuple(records[:limit]),
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(records) > limit else None,
    )


async def get_workflow(store: Store, workflow_id: str) -> WorkflowRecord:
    """The workflow with this id.

    Raises:
        WorkflowNotFoundError: no workflow has this id.
    """
    record = await store.get_workflow(workflow_id)
    if record is None:
        raise WorkflowNotFoundError(
            f"no workflow with id {workflow_id!r} exists in this store; check the id (it "
            f"may have been purged) or list workflows with `durably list`",
            workflow_id=workflow_id,
        )
    return record


async def describe_workflow(store: Store, workflow_id: str) -> WorkflowDetail:
    """The workflow, its timeline (every recorded operation and failed attempt) and
    its signals.

    Raises:
        WorkflowNotFoundError: no workflow has this id.
    """
    record = await get_workflow(store, workflow_id)
    history = await store.load_history(workflow_id)
    signals = await store.list_signals(workflow_id)
    return WorkflowDetail(
        workflow=record,
        timeline=build_timeline(history, signals),
        signals=tuple(signals),
    )


def build_timeline(
    history: History, signals: Collection[SignalRecord]
) -> tuple[TimelineEntry, ...]:
    """The operations of a history in the order they ran: body operations by sequence
    number, then compensations in the order they ran."""
    consumed = {
        signal.consumed_seq: signal for signal in signals if signal.consumed_seq is not None
    }
    entries = [
        _entry(operation, history.attempts.get(seq, []), consumed.get(seq))
        for seq, operation in history.operations.items()
    ]
    entries.extend(
        _retrying_entry(seq, attempts)
        for seq, attempts in history.attempts.items()
        if seq not in history.operations and attempts
    )
    body = sorted((entry for entry in entries if entry.seq >= 0), key=lambda entry: entry.seq)
    compensations = sorted(
        (entry for entry in entries if entry.seq < 0),
        key=lambda entry: (entry.started_at or 0, -entry.seq),
    )
    return (*body, *compensations)


def _entry(
    operation: OperationRecord, attempts: list[AttemptRecord], signal: SignalRecord | None
) -> TimelineEntry:
    return TimelineEntry(
        seq=operation.seq,
        kind=operation.kind,
        name=operation.name,
        status=str(operation.status),
        attempts=operation.attempts,
        started_at=operation.started_at,
        finished_at=operation.finished_at,
        wake_at=operation.wake_at,
        result=operation.result,
        serializer=operation.serializer,
        error=operation.error_info,
        failed_attempts=tuple(attempts),
        signal=signal if operation.kind is OperationKind.SIGNAL else None,
    )


def _retrying_entry(seq: int, attempts: list[AttemptRecord]) -> TimelineEntry:
    last = attempts[-1]
    return TimelineEntry(
        seq=seq,
        kind=None,
        name=None,
        status=RETRYING,
        attempts=last.attempt,
        started_at=attempts[0].started_at,
        finished_at=None,
        wake_at=last.next_attempt_at,
        result=None,
        serializer="json",
        error=ErrorInfo.from_json(last.error),
        failed_attempts=tuple(attempts),
        signal=None,
    )


def payload_value(text: str | None, serializer: str) -> object:
    """A stored payload as plain data for display.

    JSON payloads become their JSON value; a payload of another serializer is
    described (``{"serializer": "pickle", "bytes": 120}``), never decoded: operator
    tools must not unpickle stored data.
    """
    if text is None:
        return None
    if serializer != "json":
        return {"serializer": serializer, "bytes": len(text.encode("utf-8"))}
    try:
        return json.loads(text)
    except ValueError:
        return {"unreadable_json": text}


def failed_operation(timeline: Collection[TimelineEntry]) -> TimelineEntry | None:
    """The first body operation recorded as failed, if any."""
    for entry in timeline:
        if entry.seq >= 0 and entry.status == OperationStatus.FAILED:
            return entry
    return None

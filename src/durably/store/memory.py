"""MemoryStore: the reference implementation of the store protocol, in process memory.

For tests and for users' tests. Every method body runs without awaiting, so each is
atomic on its event loop; records are frozen, so nothing internal leaks out mutable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from durably.errors import LeaseLostError, WorkflowFinishedError, WorkflowNotFoundError
from durably.models import (
    LEASED_STATUSES,
    TERMINAL_STATUSES,
    AttemptRecord,
    Fence,
    History,
    OperationRecord,
    OperationStatus,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
    allowed_sources,
)


def _is_claimable(record: WorkflowRecord, now: int) -> bool:
    if record.status in LEASED_STATUSES:
        return record.owner is None or (record.lease_until or 0) < now
    if record.status is WorkflowStatus.SUSPENDED:
        return record.wake_at is not None and record.wake_at <= now
    return False


def _claim_order(record: WorkflowRecord) -> tuple[int, int, str]:
    moment = record.wake_at if record.status is WorkflowStatus.SUSPENDED else record.created_at
    return (moment or 0, record.created_at, record.workflow_id)


class MemoryStore:
    """All state in dicts; same semantics as the SQL stores."""

    def __init__(self) -> None:
        self._workflows: dict[str, WorkflowRecord] = {}
        self._operations: dict[str, dict[int, OperationRecord]] = {}
        self._attempts: dict[str, dict[int, list[AttemptRecord]]] = {}
        self._signals: dict[str, list[SignalRecord]] = {}
        self._executors: dict[str, tuple[str, str, int, int]] = {}
        self._next_signal_id = 1

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close; the data stays for the next open."""

    # -- workflows -------------------------------------------------------------------

    async def create_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        """Insert unless the id exists."""
        existing = self._workflows.get(record.workflow_id)
        if existing is not None:
            return existing, False
        self._workflows[record.workflow_id] = record
        return record, True

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow or None."""
        return self._workflows.get(workflow_id)

    async def list_workflows(
        self,
        *,
        statuses: Collection[WorkflowStatus] | None = None,
        names: Collection[str] | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[WorkflowRecord]:
        """Filtered, ordered by (created_at, workflow_id)."""
        selected = [
            record
            for record in self._workflows.values()
            if (statuses is None or record.status in statuses)
            and (names is None or record.workflow_name in names)
            and (created_after is None or record.created_at > created_after)
            and (created_before is None or record.created_at < created_before)
        ]
        selected.sort(key=lambda r: (r.created_at, r.workflow_id), reverse=newest_first)
        return selected[offset : offset + limit]

    async def count_workflows(self) -> dict[WorkflowStatus, int]:
        """Counts per status."""
        counts: dict[WorkflowStatus, int] = {}
        for record in self._workflows.values():
            counts[record.status] = counts.get(record.status, 0) + 1
        return counts

    async def delete_workflow(self, workflow_id: str) -> bool:
        """Delete a workflow and everything recorded for it."""
        if self._workflows.pop(workflow_id, None) is None:
            return False
        self._operations.pop(workflow_id, None)
        self._attempts.pop(workflow_id, None)
        self._signals.pop(workflow_id, None)
        return True

    async def purge_workflows(
        self, *, finished_before: int, statuses: Collection[WorkflowStatus]
    ) -> int:
        """Delete finished workflows older than the cutoff."""
        doomed = [
            record.workflow_id
            for record in self._workflows.values()
            if record.status in statuses
            and record.finished_at is not None
            and record.finished_at < finished_before
        ]
        for workflow_id in doomed:
            await self.delete_workflow(workflow_id)
        return len(doomed)

    # -- ownership -------------------------------------------------------------------

    def _claim(self, record: WorkflowRecord, owner: str, lease_until: int) -> WorkflowRecord:
        crashed = record.status in (WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING)
        claimed = dataclasses.replace(
            record,
            owner=owner,
            fence=record.fence + 1,
            lease_until=lease_until,
            wake_at=None,
            status=(
                record.status
                if record.status is WorkflowStatus.COMPENSATING
                else WorkflowStatus.RUNNING
            ),
            recovery_attempts=record.recovery_attempts + 1 if crashed else 0,
        )
        self._workflows[record.workflow_id] = claimed
        return claimed

    async def claim_workflow(
        self, workflow_id: str, *, owner: str, now: int, lease_until: int
    ) -> WorkflowRecord | None:
        """Claim one workflow if claimable."""
        record = self._workflows.get(workflow_id)
        if record is None or not _is_claimable(record, now):
            return None
        return self._claim(record, owner, lease_until)

    async def claim_due_workflows(
        self,
        *,
        owner: str,
        names: Collection[str],
        now: int,
        lease_until: int,
        limit: int,
    ) -> list[WorkflowRecord]:
        """Claim up to ``limit`` claimable workflows, oldest first."""
        due = sorted(
            (
                record
                for record in self._workflows.values()
                if record.workflow_name in names and _is_claimable(record, now)
            ),
            key=_claim_order,
        )[:limit]
        return [self._claim(record, owner, lease_until) for record in due]

    async def next_wake_time(self, *, names: Collection[str]) -> int | None:
        """Earliest wake-up of a suspended workflow."""
        return min(
            (
                record.wake_at
                for record in self._workflows.values()
                if record.status is WorkflowStatus.SUSPENDED
                and record.wake_at is not None
                and record.workflow_name in names
            ),
            default=None,
        )

    async def renew_leases(self, *, owner: str, now: int, lease_until: int) -> list[str]:
        """Extend the owner's leases; return ids with a pending cancellation."""
        cancelled: list[str] = []
        for record in list(self._workflows.values()):
            if record.owner == owner and record.status in LEASED_STATUSES:
                self._workflows[record.workflow_id] = dataclasses.replace(
                    record, lease_until=lease_until
                )
                if record.cancel_requested:
                    cancelled.append(record.workflow_id)
        if owner in self._executors:
            host, pid = self._executors[owner][1], self._executors[owner][2]
            self._executors[owner] = (owner, host, pid, now)
        return cancelled

    async def release_workflows(self, *, owner: str) -> int:
        """Give up every lease of ``owner``."""
        released = 0
        for record in list(self._workflows.values()):
            if record.owner == owner and record.status in LEASED_STATUSES:
                self._workflows[record.workflow_id] = dataclasses.replace(
                    record, owner=None, lease_until=None
                )
                released += 1
        return released

    async def register_executor(
        self, *, executor_id: str, hostname: str, pid: int, now: int
    ) -> None:
        """Record a live executor."""
        self._executors[executor_id] = (executor_id, hostname, pid, now)

    async def list_executors(self) -> list[tuple[str, str, int, int]]:
        """Every registered executor."""
        return sorted(self._executors.values())

    async def remove_executor(self, *, executor_id: str, expire_leases: bool) -> int:
        """Forget an executor, optionally freeing its workflows at once."""
        self._executors.pop(executor_id, None)
        if not expire_leases:
            return 0
        return await self.release_workflows(owner=executor_id)

    # -- history ---------------------------------------------------------------------

    def _check_fence(self, fence: Fence) -> WorkflowRecord:
        record = self._workflows.get(fence.workflow_id)
        if record is None or record.owner != fence.owner or record.fence != fence.fence:
            raise LeaseLostError(
                f"workflow {fence.workflow_id!r} is no longer owned by {fence.owner!r} "
                f"(fence {fence.fence}): another executor took it over"
            )
        return record

    async def load_history(self, workflow_id: str) -> History:
        """Every recorded operation and failed attempt."""
        return History(
            operations=dict(self._operations.get(workflow_id, {})),
            attempts={
                seq: list(attempts) for seq, attempts in self._attempts.get(workflow_id, {}).items()
            },
        )

    async def record_operation(self, fence: Fence, operation: OperationRecord) -> None:
        """Insert or replace an operation, fenced."""
        record = self._check_fence(fence)
        self._operations.setdefault(fence.workflow_id, {})[operation.seq] = operation
        moment = operation.finished_at or operation.started_at
        self._workflows[fence.workflow_id] = dataclasses.replace(
            record, updated_at=max(record.updated_at, moment)
        )

    async def record_attempt(self, fence: Fence, attempt: AttemptRecord) -> None:
        """Insert a failed attempt, fenced."""
        self._check_fence(fence)
        attempts = self._attempts.setdefault(fence.workflow_id, {}).setdefault(attempt.seq, [])
        attempts[:] = [a for a in attempts if a.attempt != attempt.attempt]
        attempts.append(attempt)
        attempts.sort(key=lambda a: a.attempt)

    # -- status ----------------------------------------------------------------------

    async def set_workflow_status(
        self,
        fence: Fence,
        status: WorkflowStatus,
        *,
        now: int,
        result: str | None = None,
        error: str | None = None,
    ) -> WorkflowRecord:
        """Compare-and-set the status, fenced."""
        record = self._check_fence(fence)
        if record.status is not status and record.status not in allowed_sources(status):
            raise LeaseLostError(
                f"workflow {fence.workflow_id!r} cannot go from {record.status} to {status}"
            )
        releases = status in TERMINAL_STATUSES or status is WorkflowStatus.PARKED
        updated = dataclasses.replace(
            record,
            status=status,
            updated_at=now,
            result=result if result is not None else record.result,
            error=error if error is not None else record.error,
            owner=None if releases else record.owner,
            lease_until=None if releases else record.lease_until,
            finished_at=now if status in TERMINAL_STATUSES else record.finished_at,
            wake_at=None if releases else record.wake_at,
            wait_reason=None if releases else record.wait_reason,
        )
        self._workflows[fence.workflow_id] = updated
        return updated

    async def suspend_workflow(
        self,
        fence: Fence,
        *,
        now: int,
        wake_at: int | None,
        wait_reason: str,
        waiting_for_signal: str | None = None,
    ) -> WorkflowRecord:
        """RUNNING -> SUSPENDED, releasing ownership; an inbox hit wakes it at once."""
        record = self._check_fence(fence)
        if record.status is not WorkflowStatus.RUNNING:
            raise LeaseLostError(
                f"workflow {fence.workflow_id!r} cannot suspend from {record.status}"
            )
        if waiting_for_signal is not None and any(
            signal.name == waiting_for_signal and signal.consumed_seq is None
            for signal in self._signals.get(fence.workflow_id, [])
        ):
            wake_at = now
        if record.cancel_requested:
            wake_at = now
        updated = dataclasses.replace(
            record,
            status=WorkflowStatus.SUSPENDED,
            owner=None,
            lease_until=None,
            wake_at=wake_at,
            wait_reason=wait_reason,
            updated_at=now,
            recovery_attempts=0,
        )
        self._workflows[fence.workflow_id] = updated
        return updated

    async def request_cancel(
        self, workflow_id: str, *, compensate: bool, now: int
    ) -> WorkflowRecord:
        """Record a cancellation request."""
        record = self._workflows.get(workflow_id)
        if record is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
        if record.status is WorkflowStatus.CANCELLED:
            return record
        if record.status in TERMINAL_STATUSES:
            raise WorkflowFinishedError(
                f"workflow {workflow_id!r} already ended {record.status}; nothing to cancel"
            )
        updated = dataclasses.replace(
            record, cancel_requested=True, compensate_on_cancel=compensate, updated_at=now
        )
        unowned = record.owner is None or (record.lease_until or 0) < now
        if unowned and record.status in (
            WorkflowStatus.PENDING,
            WorkflowStatus.SUSPENDED,
            WorkflowStatus.PARKED,
        ):
            if compensate and record.status is not WorkflowStatus.PENDING:
                updated = dataclasses.replace(
                    updated, status=WorkflowStatus.SUSPENDED, wake_at=now, owner=None
                )
            else:
                updated = dataclasses.replace(
                    updated,
                    status=WorkflowStatus.CANCELLED,
                    finished_at=now,
                    owner=None,
                    lease_until=None,
                    wake_at=None,
                    wait_reason=None,
                )
        self._workflows[workflow_id] = updated
        return updated

    # -- signals ---------------------------------------------------------------------

    async def append_signal(
        self,
        workflow_id: str,
        name: str,
        payload: str | None,
        *,
        serializer: str,
        dedup_key: str | None,
        now: int,
    ) -> tuple[SignalRecord, bool]:
        """Append to the inbox and wake a suspended workflow."""
        record = self._workflows.get(workflow_id)
        if record is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
        if record.status in TERMINAL_STATUSES:
            raise WorkflowFinishedError(
                f"workflow {workflow_id!r} already ended {record.status}; it cannot "
                f"receive signal {name!r}"
            )
        inbox = self._signals.setdefault(workflow_id, [])
        if dedup_key is not None:
            for existing in inbox:
                if existing.dedup_key == dedup_key:
                    return existing, False
        signal = SignalRecord(
            signal_id=self._next_signal_id,
            workflow_id=workflow_id,
            name=name,
            payload=payload,
            serializer=serializer,
            dedup_key=dedup_key,
            created_at=now,
        )
        self._next_signal_id += 1
        inbox.append(signal)
        if record.status is WorkflowStatus.SUSPENDED:
            self._workflows[workflow_id] = dataclasses.replace(record, wake_at=now)
        return signal, True

    async def consume_signal(self, fence: Fence, operation: OperationRecord) -> SignalRecord | None:
        """Consume the oldest matching signal and record the operation, atomically."""
        self._check_fence(fence)
        inbox = self._signals.get(fence.workflow_id, [])
        for index, signal in enumerate(inbox):
            if signal.name == operation.name and signal.consumed_seq is None:
                consumed = dataclasses.replace(
                    signal, consumed_seq=operation.seq, consumed_at=operation.finished_at
                )
                inbox[index] = consumed
                await self.record_operation(
                    fence,
                    dataclasses.replace(
                        operation,
                        status=OperationStatus.COMPLETED,
                        result=signal.payload,
                        serializer=signal.serializer,
                    ),
                )
                return consumed
        return None

    async def list_signals(self, workflow_id: str) -> list[SignalRecord]:
        """The inbox, oldest first."""
        return list(self._signals.get(workflow_id, []))

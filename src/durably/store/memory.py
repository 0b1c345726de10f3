"""MemoryStore: the reference implementation of the store protocol, in process memory.

It is the executable reading of ``store/base.py``: every other store must behave as
this one does under the contract suite (``durably.testing.StoreContract``). It is
meant for tests, the engine's and users' own.

No method awaits anything before it has finished changing state, so on one event
loop each call is atomic, as a database transaction would be, without locks. Records
are frozen dataclasses and every collection handed out is a fresh copy, so callers
can never reach the store's own state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

from durably.models import (
    LEASED_STATUSES,
    AttemptRecord,
    Fence,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
    QueueLimits,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
    allowed_sources,
)
from durably.store._rules import (
    cancel_action,
    lease_lost,
    made_or_refused,
    queue_allowance,
    require_same_workflow,
    resume_target,
    workflow_finished,
    workflow_not_found,
)


def _is_claimable(record: WorkflowRecord, now: int) -> bool:
    """Whether ``record`` may be claimed at ``now`` (the rule in ``store/base.py``).

    An owner without a ``lease_until`` holds no lease, so such a row is claimable:
    otherwise nothing could ever recover it.
    """
    if record.status in LEASED_STATUSES:
        return not _has_live_lease(record, now)
    if record.status is WorkflowStatus.SUSPENDED:
        return record.wake_at is not None and record.wake_at <= now
    return False


def _claim_order(record: WorkflowRecord) -> tuple[int, int, str]:
    """Sort key of due workflows: since when it is due (its timer for a suspended
    workflow, its creation otherwise), then creation, then id."""
    due_since = record.wake_at if record.status is WorkflowStatus.SUSPENDED else None
    return (
        record.created_at if due_since is None else due_since,
        record.created_at,
        record.workflow_id,
    )


def _never_ran(record: WorkflowRecord) -> bool:
    """Whether the workflow was never claimed: it has no history for a version to replay."""
    return record.status is WorkflowStatus.PENDING and record.started_at is None


def _is_run_by(record: WorkflowRecord, versions: Mapping[str, Sequence[str]] | None) -> bool:
    """Whether an executor running ``versions`` (by name; None: all) runs ``record``
    (see ``store/base.py``): one of its versions, unversioned, or never run."""
    return (
        versions is None
        or record.version == ""
        or record.version in versions.get(record.workflow_name, ())
        or _never_ran(record)
    )


def _claimed_version(record: WorkflowRecord, versions: Mapping[str, Sequence[str]] | None) -> str:
    """The version a claim leaves on ``record``: the claimer's own when it never ran."""
    runs = () if versions is None else versions.get(record.workflow_name, ())
    return runs[0] if runs and _never_ran(record) else record.version


def _is_owned_by(record: WorkflowRecord, fence: Fence) -> bool:
    return record.owner == fence.owner and record.fence == fence.fence


def _has_live_lease(record: WorkflowRecord, now: int) -> bool:
    return record.owner is not None and record.lease_until is not None and record.lease_until >= now


def _earliest(moment: int | None, now: int) -> int:
    """``now``, unless ``moment`` is already earlier (waking never delays a timer)."""
    return now if moment is None else min(moment, now)


class MemoryStore:
    """Workflows, operations and signals in dictionaries.

    The data outlives :meth:`close`, so several apps in one test can share a store
    and a "restarted" app finds its workflows again.
    """

    def __init__(self) -> None:
        self._workflows: dict[str, WorkflowRecord] = {}
        self._operations: dict[str, dict[int, OperationRecord]] = {}
        self._attempts: dict[str, dict[tuple[int, int], AttemptRecord]] = {}
        #: Per workflow, signals by id; dicts keep insertion order, which is id order.
        self._signals: dict[str, dict[int, SignalRecord]] = {}
        self._signal_ids_by_dedup_key: dict[tuple[str, str], int] = {}
        self._executors: dict[str, tuple[str, str, int, int]] = {}
        self._last_signal_id = 0
        #: Per workflow, the time of its latest recorded operation: reads report the
        #: later of it and the record's own updated_at (as the SQL stores' reads do),
        #: so that recording a step does not copy the workflow's record.
        self._progress: dict[str, int] = {}

    async def open(self) -> None:
        """Nothing to connect to; present for the protocol."""

    async def close(self) -> None:
        """Nothing to release; the data stays for the next :meth:`open`."""

    # -- workflows -------------------------------------------------------------------

    async def create_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        """Insert ``record`` unless its id is taken (see :class:`~durably.store.Store`)."""
        existing = self._workflows.get(record.workflow_id)
        if existing is not None:
            return existing, False
        self._workflows[record.workflow_id] = record
        return record, True

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow with this id, or None."""
        record = self._workflows.get(workflow_id)
        return None if record is None else self._with_progress(record)

    def _with_progress(self, record: WorkflowRecord) -> WorkflowRecord:
        """``record`` as a read reports it: updated at its latest operation, if later."""
        progress = self._progress.get(record.workflow_id)
        if progress is None or progress <= record.updated_at:
            return record
        return dataclasses.replace(record, updated_at=progress)

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
        """Workflows matching every filter, ordered by (created_at, workflow_id)."""
        wanted_statuses = None if statuses is None else frozenset(statuses)
        wanted_names = None if names is None else frozenset(names)
        selected = [
            record
            for record in self._workflows.values()
            if (wanted_statuses is None or record.status in wanted_statuses)
            and (wanted_names is None or record.workflow_name in wanted_names)
            and (created_after is None or record.created_at > created_after)
            and (created_before is None or record.created_at < created_before)
        ]
        selected.sort(key=lambda r: (r.created_at, r.workflow_id), reverse=newest_first)
        return [self._with_progress(r) for r in selected[max(offset, 0) :][: max(limit, 0)]]

    async def count_workflows(self) -> dict[WorkflowStatus, int]:
        """The number of workflows in each status that has any."""
        counts: dict[WorkflowStatus, int] = {}
        for record in self._workflows.values():
            counts[record.status] = counts.get(record.status, 0) + 1
        return counts

    async def delete_workflow(self, workflow_id: str) -> bool:
        """Delete a workflow with its operations, attempts and signals."""
        return self._delete(workflow_id)

    async def purge_workflows(
        self, *, finished_before: int, statuses: Collection[WorkflowStatus]
    ) -> int:
        """Delete workflows in ``statuses`` that finished before ``finished_before``."""
        wanted = frozenset(statuses)
        doomed = [
            record.workflow_id
            for record in self._workflows.values()
            if record.status in wanted
            and record.finished_at is not None
            and record.finished_at < finished_before
        ]
        for workflow_id in doomed:
            self._delete(workflow_id)
        return len(doomed)

    def _delete(self, workflow_id: str) -> bool:
        if self._workflows.pop(workflow_id, None) is None:
            return False
        self._progress.pop(workflow_id, None)
        self._operations.pop(workflow_id, None)
        self._attempts.pop(workflow_id, None)
        for signal in self._signals.pop(workflow_id, {}).values():
            if signal.dedup_key is not None:
                del self._signal_ids_by_dedup_key[(workflow_id, signal.dedup_key)]
        return True

    # -- ownership -------------------------------------------------------------------

    def _claim(
        self,
        record: WorkflowRecord,
        owner: str,
        now: int,
        lease_until: int,
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> WorkflowRecord:
        run_did_not_end = record.status in (WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING)
        claimed = dataclasses.replace(
            record,
            version=_claimed_version(record, versions),
            owner=owner,
            fence=record.fence + 1,
            lease_until=lease_until,
            wake_at=None,
            status=(
                WorkflowStatus.COMPENSATING
                if record.status is WorkflowStatus.COMPENSATING
                else WorkflowStatus.RUNNING
            ),
            recovery_attempts=record.recovery_attempts + 1 if run_did_not_end else 0,
            started_at=now if record.started_at is None else record.started_at,
        )
        self._workflows[record.workflow_id] = claimed
        return claimed

    async def claim_workflow(
        self, workflow_id: str, *, owner: str, now: int, lease_until: int
    ) -> WorkflowRecord | None:
        """Claim the workflow if it is claimable; None otherwise (or when unknown)."""
        record = self._workflows.get(workflow_id)
        if record is None or not _is_claimable(record, now):
            return None
        return self._claim(record, owner, now, lease_until)

    async def claim_due_workflows(
        self,
        *,
        owner: str,
        names: Collection[str],
        now: int,
        lease_until: int,
        limit: int,
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> list[WorkflowRecord]:
        """Claim up to ``limit`` claimable workflows named in ``names`` (of a version
        in ``versions``), earliest due first; the list is in that order."""
        wanted = frozenset(names)
        due = sorted(
            (
                record
                for record in self._workflows.values()
                if record.workflow_name in wanted
                and record.queue_name is None
                and _is_claimable(record, now)
                and _is_run_by(record, versions)
            ),
            key=_claim_order,
        )
        return [
            self._claim(record, owner, now, lease_until, versions)
            for record in due[: max(limit, 0)]
        ]

    async def claim_queued_workflows(
        self,
        *,
        owner: str,
        queue: QueueLimits,
        names: Collection[str],
        now: int,
        lease_until: int,
        limit: int,
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> list[WorkflowRecord]:
        """Claim a queue's workflows within its limits, highest priority first (see
        :class:`~durably.store.Store`)."""
        if limit <= 0 or not names:
            return []
        wanted = frozenset(names)
        members = [r for r in self._workflows.values() if r.queue_name == queue.name]
        running = [
            r
            for r in members
            if r.status in (WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING)
            and _has_live_lease(r, now)
        ]
        allowed = queue_allowance(
            queue,
            limit=limit,
            running=len(running),
            running_here=sum(r.owner == owner for r in running),
            started=sum(
                r.started_at is not None and r.started_at > now - queue.rate_period for r in members
            ),
        )
        due = sorted(
            (
                r
                for r in members
                if r.workflow_name in wanted and _is_claimable(r, now) and _is_run_by(r, versions)
            ),
            key=lambda r: (-r.priority, *_claim_order(r)),
        )
        return [self._claim(record, owner, now, lease_until, versions) for record in due[:allowed]]

    async def next_wake_time(
        self,
        *,
        names: Collection[str],
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> int | None:
        """The earliest timer of a suspended workflow named in ``names`` (of a version
        in ``versions``), or None."""
        wanted = frozenset(names)
        return min(
            (
                record.wake_at
                for record in self._workflows.values()
                if record.status is WorkflowStatus.SUSPENDED
                and record.wake_at is not None
                and record.workflow_name in wanted
                and _is_run_by(record, versions)
            ),
            default=None,
        )

    async def renew_leases(self, *, owner: str, now: int, lease_until: int) -> list[str]:
        """Extend every lease of ``owner`` and record its heartbeat.

        Returns:
            The ids (sorted) of its workflows whose cancellation was requested.
        """
        cancelled: list[str] = []
        for workflow_id, record in self._workflows.items():
            if record.owner == owner:
                self._workflows[workflow_id] = dataclasses.replace(record, lease_until=lease_until)
                if record.cancel_requested:
                    cancelled.append(workflow_id)
        executor = self._executors.get(owner)
        if executor is not None:
            self._executors[owner] = (owner, executor[1], executor[2], now)
        return sorted(cancelled)

    async def release_workflows(self, *, owner: str) -> int:
        """Give up every lease of ``owner``, giving back the recovery attempt each
        claim counted (a clean stop is not a crash); return how many there were."""
        return self._free(owner, crashed=False)

    def _free(self, owner: str, *, crashed: bool) -> int:
        released = [
            workflow_id for workflow_id, record in self._workflows.items() if record.owner == owner
        ]
        for workflow_id in released:
            record = self._workflows[workflow_id]
            attempts = record.recovery_attempts if crashed else max(record.recovery_attempts - 1, 0)
            self._workflows[workflow_id] = dataclasses.replace(
                record, owner=None, lease_until=None, recovery_attempts=attempts
            )
        return len(released)

    async def register_executor(
        self, *, executor_id: str, hostname: str, pid: int, now: int
    ) -> None:
        """Record a live executor (insert or replace)."""
        self._executors[executor_id] = (executor_id, hostname, pid, now)

    async def list_executors(self) -> list[tuple[str, str, int, int]]:
        """Every registered executor, by id."""
        return sorted(self._executors.values())

    async def remove_executor(self, *, executor_id: str, expire_leases: bool) -> int:
        """Forget an executor; with ``expire_leases`` release its workflows at once."""
        self._executors.pop(executor_id, None)
        if not expire_leases:
            return 0
        return self._free(executor_id, crashed=True)

    # -- history ---------------------------------------------------------------------

    def _owned(self, fence: Fence) -> WorkflowRecord:
        """The workflow, if ``fence`` still owns it."""
        record = self._workflows.get(fence.workflow_id)
        if record is None:
            raise lease_lost(fence, "the workflow does not exist")
        if not _is_owned_by(record, fence):
            raise lease_lost(fence)
        return record

    async def load_history(self, workflow_id: str) -> History:
        """Every recorded operation (by seq) and failed attempt (by seq, then attempt)."""
        operations = self._operations.get(workflow_id, {})
        attempts: dict[int, list[AttemptRecord]] = {}
        for key in sorted(self._attempts.get(workflow_id, {})):
            attempts.setdefault(key[0], []).append(self._attempts[workflow_id][key])
        return History(
            operations={seq: operations[seq] for seq in sorted(operations)},
            attempts=attempts,
        )

    async def list_operations(
        self,
        workflow_id: str,
        *,
        kinds: Collection[OperationKind],
        name: str | None = None,
        after_seq: int = -1,
    ) -> list[OperationRecord]:
        """Operations of ``kinds`` (named ``name`` unless None) after ``after_seq``, by seq."""
        operations = self._operations.get(workflow_id, {})
        wanted = frozenset(kinds)
        return [
            operations[seq]
            for seq in sorted(operations)
            if seq > after_seq
            and operations[seq].kind in wanted
            and (name is None or operations[seq].name == name)
        ]

    def _record(self, record: WorkflowRecord, operation: OperationRecord) -> None:
        self._operations.setdefault(record.workflow_id, {})[operation.seq] = operation
        moment = operation.started_at if operation.finished_at is None else operation.finished_at
        progress = self._progress.get(record.workflow_id)
        if progress is None or moment > progress:
            self._progress[record.workflow_id] = moment

    async def record_operation(self, fence: Fence, operation: OperationRecord) -> None:
        """Insert or replace the operation at its seq, fenced."""
        require_same_workflow(fence, operation.workflow_id)
        self._record(self._owned(fence), operation)

    async def record_attempt(self, fence: Fence, attempt: AttemptRecord) -> None:
        """Insert (or replace, same key) a failed attempt, fenced."""
        require_same_workflow(fence, attempt.workflow_id)
        self._owned(fence)
        attempts = self._attempts.setdefault(fence.workflow_id, {})
        attempts[(attempt.seq, attempt.attempt)] = attempt

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
        """Compare-and-set the status, fenced (see :class:`~durably.store.Store`)."""
        record = self._workflows.get(fence.workflow_id)
        if (
            record is None
            or not _is_owned_by(record, fence)
            or (record.status is not status and record.status not in allowed_sources(status))
        ):
            return made_or_refused(record, fence, status)
        releases = status.is_terminal or status is WorkflowStatus.PARKED
        updated = dataclasses.replace(
            record,
            status=status,
            updated_at=max(record.updated_at, now),
            result=record.result if result is None else result,
            error=record.error if error is None else error,
            owner=None if releases else record.owner,
            lease_until=None if releases else record.lease_until,
            finished_at=now if status.is_terminal else record.finished_at,
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
        """RUNNING to SUSPENDED, releasing ownership, fenced.

        Besides a waiting signal, a cancellation requested while the workflow was
        running also makes it due now: its owner may have suspended before seeing
        the flag, and a workflow waiting only for a signal would otherwise never see it.
        """
        record = self._workflows.get(fence.workflow_id)
        if (
            record is None
            or not _is_owned_by(record, fence)
            or record.status is not WorkflowStatus.RUNNING
        ):
            return made_or_refused(record, fence, WorkflowStatus.SUSPENDED)
        if record.cancel_requested or (
            waiting_for_signal is not None
            and self._oldest_unconsumed(fence.workflow_id, waiting_for_signal) is not None
        ):
            wake_at = _earliest(wake_at, now)
        updated = dataclasses.replace(
            record,
            status=WorkflowStatus.SUSPENDED,
            owner=None,
            lease_until=None,
            wake_at=wake_at,
            wait_reason=wait_reason,
            updated_at=max(record.updated_at, now),
        )
        self._workflows[fence.workflow_id] = updated
        return updated

    async def request_cancel(
        self, workflow_id: str, *, compensate: bool, now: int
    ) -> WorkflowRecord:
        """Record a cancellation request (see :class:`~durably.store.Store`).

        A request with ``compensate`` is never weakened by a later one without it.
        """
        record = self._workflows.get(workflow_id)
        if record is None:
            raise workflow_not_found(workflow_id)
        action = cancel_action(record, compensate=compensate, now=now)
        if action is None:
            return record
        updated = dataclasses.replace(
            record,
            cancel_requested=True,
            compensate_on_cancel=record.compensate_on_cancel or compensate,
            updated_at=max(record.updated_at, now),
        )
        if action == "wake_to_compensate":
            # PARKED is never claimed, so it must become SUSPENDED to be woken.
            updated = dataclasses.replace(
                updated,
                status=(
                    WorkflowStatus.PENDING
                    if record.status is WorkflowStatus.PENDING
                    else WorkflowStatus.SUSPENDED
                ),
                wake_at=_earliest(record.wake_at, now),
            )
        elif action == "cancel_idle_workflow":
            updated = dataclasses.replace(
                updated,
                status=WorkflowStatus.CANCELLED,
                owner=None,
                lease_until=None,
                finished_at=now,
            )
        self._workflows[workflow_id] = updated
        return updated

    async def resume_workflow(self, workflow_id: str, *, now: int) -> WorkflowRecord:
        """The operator's resume (see :class:`~durably.store.Store`)."""
        record = self._workflows.get(workflow_id)
        if record is None:
            raise workflow_not_found(workflow_id)
        target = resume_target(record)
        compensating = target is WorkflowStatus.COMPENSATING
        if record.status is not WorkflowStatus.PARKED:
            operations = self._operations.get(workflow_id, {})
            rerun = {
                seq
                for seq, operation in operations.items()
                if operation.status is OperationStatus.FAILED and (seq < 0) == compensating
            }
            for seq in rerun:
                del operations[seq]
            attempts = self._attempts.get(workflow_id, {})
            for key in [key for key in attempts if key[0] in rerun]:
                del attempts[key]
        resumed = dataclasses.replace(
            record,
            status=target,
            owner=None,
            lease_until=None,
            wake_at=None,
            wait_reason=None,
            error=record.error if compensating else None,
            recovery_attempts=0,
            finished_at=None,
            updated_at=max(record.updated_at, now),
        )
        self._workflows[workflow_id] = resumed
        return resumed

    # -- signals ---------------------------------------------------------------------

    def _oldest_unconsumed(self, workflow_id: str, name: str) -> SignalRecord | None:
        for signal in self._signals.get(workflow_id, {}).values():
            if signal.name == name and signal.consumed_seq is None:
                return signal
        return None

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
        """Append to the inbox and wake the workflow if it is suspended.

        A repeated ``dedup_key`` returns the first signal even once the workflow has
        finished, so that retrying a send that succeeded never turns into an error.
        """
        record = self._workflows.get(workflow_id)
        if record is None:
            raise workflow_not_found(workflow_id)
        if dedup_key is not None:
            existing_id = self._signal_ids_by_dedup_key.get((workflow_id, dedup_key))
            if existing_id is not None:
                return self._signals[workflow_id][existing_id], False
        if record.status.is_terminal:
            raise workflow_finished(workflow_id, record.status, f"send it signal {name!r}")
        self._last_signal_id += 1
        signal = SignalRecord(
            signal_id=self._last_signal_id,
            workflow_id=workflow_id,
            name=name,
            payload=payload,
            serializer=serializer,
            dedup_key=dedup_key,
            created_at=now,
        )
        self._signals.setdefault(workflow_id, {})[signal.signal_id] = signal
        if dedup_key is not None:
            self._signal_ids_by_dedup_key[(workflow_id, dedup_key)] = signal.signal_id
        if record.status is WorkflowStatus.SUSPENDED:
            self._workflows[workflow_id] = dataclasses.replace(
                record, wake_at=_earliest(record.wake_at, now)
            )
        return signal, True

    async def consume_signal(self, fence: Fence, operation: OperationRecord) -> SignalRecord | None:
        """Consume the oldest unconsumed signal named ``operation.name`` and record
        the operation with its payload, fenced; None (and no write) when there is none."""
        require_same_workflow(fence, operation.workflow_id)
        record = self._owned(fence)
        signal = self._oldest_unconsumed(fence.workflow_id, operation.name)
        if signal is None:
            return None
        consumed = dataclasses.replace(
            signal,
            consumed_seq=operation.seq,
            consumed_at=(
                operation.started_at if operation.finished_at is None else operation.finished_at
            ),
        )
        self._signals[fence.workflow_id][signal.signal_id] = consumed
        self._record(
            record,
            dataclasses.replace(
                operation,
                status=OperationStatus.COMPLETED,
                result=signal.payload,
                serializer=signal.serializer,
            ),
        )
        return consumed

    async def list_signals(self, workflow_id: str) -> list[SignalRecord]:
        """The inbox, consumed or not, oldest first."""
        return list(self._signals.get(workflow_id, {}).values())

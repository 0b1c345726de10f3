"""The store protocol: the purpose-shaped operations the engine needs from a database.

This protocol is the definition of a store, together with the contract suite in
``durably.testing.store_contract``: a store is correct when it passes that suite.
Every method is async. Timestamps are UTC epoch microseconds. Every write that a
running workflow makes is *fenced*: it commits only while the row's ``owner`` and
``fence`` still equal the given :class:`~durably.models.Fence`, and raises
:class:`~durably.errors.LeaseLostError` otherwise, writing nothing.

Claimable workflows (the single definition used by every claim):

* ``PENDING``, ``RUNNING`` or ``COMPENSATING`` whose ``owner`` is NULL or whose
  ``lease_until`` is earlier than ``now``;
* ``SUSPENDED`` whose ``wake_at`` is set and not later than ``now``.

``PARKED`` and terminal workflows are never claimed.

Versions: a claim of many workflows (``claim_due_workflows``,
``claim_queued_workflows``) may be given ``versions``, the versions the executor's code
runs by workflow name, the one it records first (``{"checkout": ["2", "1"]}``). It then
takes a workflow only when

* its recorded ``version`` is in ``versions[workflow_name]``;
* or it is ``""`` (recorded without a version: any code that registers the name runs it);
* or it never ran (``PENDING`` with no ``started_at``: there is no history to replay);
  the claim then records the claimer's version, ``versions[workflow_name][0]``.

``None`` takes every version and changes none. So during a rolling deploy an old and a
new executor share a database, each resuming the workflows of its own version and
leaving the others claimable, and a client with an outdated copy of a workflow can
still start it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from durably.models import (
    AttemptRecord,
    Fence,
    History,
    OperationKind,
    OperationRecord,
    QueueLimits,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
)


@runtime_checkable
class Store(Protocol):
    """Persistence for workflows, their recorded operations and their signals."""

    async def open(self) -> None:
        """Connect and create or migrate the schema. Idempotent.

        Raises:
            SchemaVersionError: the database was written by a newer durably.
            StoreError: the database cannot be opened.
        """
        ...

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""
        ...

    # -- workflows ---------------------------------------------------------------

    async def create_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        """Insert ``record`` unless a workflow with its id exists.

        The record is stored as given (a starter may insert it already owned and
        ``RUNNING`` so that starting costs one write).

        Returns:
            ``(stored, True)`` when inserted; ``(existing, False)`` when the id was
            taken (the existing row is returned unchanged).
        """
        ...

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow with this id, or None."""
        ...

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
        """Workflows matching every given filter, ordered by (created_at, workflow_id).

        ``None`` means no filter; an empty collection matches nothing.
        """
        ...

    async def count_workflows(self) -> dict[WorkflowStatus, int]:
        """The number of workflows in each status (statuses with none are omitted)."""
        ...

    async def delete_workflow(self, workflow_id: str) -> bool:
        """Delete a workflow with its operations, attempts and signals.

        Returns:
            Whether a workflow was deleted.
        """
        ...

    async def purge_workflows(
        self, *, finished_before: int, statuses: Collection[WorkflowStatus]
    ) -> int:
        """Delete finished workflows (and their children rows) whose ``finished_at`` is
        earlier than ``finished_before`` and whose status is in ``statuses``.

        Returns:
            How many workflows were deleted.
        """
        ...

    # -- ownership ---------------------------------------------------------------

    async def claim_workflow(
        self, workflow_id: str, *, owner: str, now: int, lease_until: int
    ) -> WorkflowRecord | None:
        """Claim one workflow if it is claimable (see the module docstring).

        On success: ``owner`` is set, ``fence`` incremented, ``lease_until`` set,
        ``wake_at`` cleared, ``PENDING``/``SUSPENDED`` become ``RUNNING``
        (``COMPENSATING`` stays), and ``recovery_attempts`` is incremented when the
        workflow was ``RUNNING`` or ``COMPENSATING`` (its previous run did not end),
        and reset to 0 otherwise.

        Returns:
            The claimed record, or None when it is not claimable (or unknown).
        """
        ...

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
        """Claim up to ``limit`` claimable workflows whose name is in ``names`` (and
        whose version ``versions`` admits, see the module docstring) and that are on
        no queue, oldest wake-up / creation first, exactly as :meth:`claim_workflow`
        does (which also sets ``started_at`` the first time).

        Two executors calling this concurrently never claim the same workflow.
        """
        ...

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
        """Claim claimable workflows of ``queue.name`` whose name is in ``names`` (and
        whose version ``versions`` admits, see the module docstring), highest
        ``priority`` first, then oldest wake-up / creation, as
        :meth:`claim_workflow` does: at most ``limit``, and no more than the queue's
        limits leave at ``now`` (see :class:`~durably.models.QueueLimits`).

        Concurrent claims of one queue, from any number of executors, are serialised,
        so that together they never exceed its limits.
        """
        ...

    async def next_wake_time(
        self,
        *,
        names: Collection[str],
        versions: Mapping[str, Sequence[str]] | None = None,
    ) -> int | None:
        """The earliest ``wake_at`` of a ``SUSPENDED`` workflow with a name in
        ``names`` (and a version ``versions`` admits), or None."""
        ...

    async def renew_leases(self, *, owner: str, now: int, lease_until: int) -> list[str]:
        """Extend every lease held by ``owner`` (one statement) and record the
        executor's heartbeat.

        Returns:
            The ids of workflows held by ``owner`` whose cancellation was requested.
        """
        ...

    async def release_workflows(self, *, owner: str) -> int:
        """Give up every lease held by ``owner`` so that others can claim them now:
        its executor stops cleanly. A run given up is not a crash: each workflow's
        ``recovery_attempts`` goes down by one (not below zero), giving back what the
        claim of that run counted, so that restarts never park a workflow.

        Returns:
            How many workflows were released.
        """
        ...

    async def register_executor(
        self, *, executor_id: str, hostname: str, pid: int, now: int
    ) -> None:
        """Record a live executor (upsert), so that a later process can tell whether
        it is still alive."""
        ...

    async def list_executors(self) -> list[tuple[str, str, int, int]]:
        """Every registered executor as ``(executor_id, hostname, pid, heartbeat_at)``."""
        ...

    async def remove_executor(self, *, executor_id: str, expire_leases: bool) -> int:
        """Forget an executor; with ``expire_leases`` its workflows become claimable at
        once (used when the executor is known to be dead: its runs crashed, and their
        ``recovery_attempts`` are kept).

        Returns:
            How many leases were expired.
        """
        ...

    # -- history -----------------------------------------------------------------

    async def load_history(self, workflow_id: str) -> History:
        """Every recorded operation and failed attempt of the workflow."""
        ...

    async def list_operations(
        self,
        workflow_id: str,
        *,
        kinds: Collection[OperationKind],
        name: str | None = None,
        after_seq: int = -1,
    ) -> list[OperationRecord]:
        """The workflow's recorded operations of one of ``kinds`` (and named ``name``,
        unless None) whose ``seq`` is greater than ``after_seq``, by ``seq``.

        The default ``after_seq`` gives every body operation (compensations have
        negative seqs). An unknown workflow has none. This is the narrow read behind
        events and streams, polled by readers outside the workflow.
        """
        ...

    async def record_operation(self, fence: Fence, operation: OperationRecord) -> None:
        """Insert or replace the operation at ``(workflow_id, seq)``, fenced.

        The workflow's ``updated_at``, as read afterwards, counts the operation: a
        store may move it here to ``operation.finished_at`` (or ``started_at``), or
        derive it when reading, from the operation with the highest seq.

        Raises:
            LeaseLostError: ``fence`` no longer matches; nothing was written.
        """
        ...

    async def record_attempt(self, fence: Fence, attempt: AttemptRecord) -> None:
        """Insert a failed attempt (unique per ``(workflow_id, seq, attempt)``), fenced.

        Raises:
            LeaseLostError: ``fence`` no longer matches; nothing was written.
        """
        ...

    # -- status ------------------------------------------------------------------

    async def set_workflow_status(
        self,
        fence: Fence,
        status: WorkflowStatus,
        *,
        now: int,
        result: str | None = None,
        error: str | None = None,
    ) -> WorkflowRecord:
        """Move the workflow to ``status`` (compare-and-set, fenced).

        The current status must be ``status`` itself or one of
        ``models.allowed_sources(status)``. A terminal status or ``PARKED`` also
        releases ownership and sets ``finished_at`` (terminal only); ``result`` and
        ``error`` are stored when given.

        Raises:
            LeaseLostError: ``fence`` no longer matches, or the transition is not
                allowed (the workflow was changed under us); nothing was written.
        """
        ...

    async def suspend_workflow(
        self,
        fence: Fence,
        *,
        now: int,
        wake_at: int | None,
        wait_reason: str,
        waiting_for_signal: str | None = None,
    ) -> WorkflowRecord:
        """Move a ``RUNNING`` workflow to ``SUSPENDED`` and release its ownership.

        ``wake_at`` is when a timer wakes it (None: only a signal does). If
        ``waiting_for_signal`` names a signal that already has an unconsumed entry in
        the inbox, or a cancellation was requested, ``wake_at`` is set to ``now``
        instead, in the same transaction, so that a signal or a cancellation that
        arrived while the workflow was suspending is never lost. ``recovery_attempts``
        is reset to 0 (the run ended cleanly).

        Raises:
            LeaseLostError: ``fence`` no longer matches; nothing was written.
        """
        ...

    async def request_cancel(
        self, workflow_id: str, *, compensate: bool, now: int
    ) -> WorkflowRecord:
        """Record a cancellation request durably.

        If nobody holds the workflow (``PENDING``, ``SUSPENDED`` or ``PARKED`` with no
        live owner): without ``compensate`` (or when ``PENDING``: nothing ran) it becomes
        ``CANCELLED`` at once; with ``compensate`` it becomes ``SUSPENDED`` with
        ``wake_at`` set to ``now`` so that an executor claims it and runs its
        compensations. A running workflow is left to its owner, which sees the flag.
        Cancelling a ``CANCELLED`` workflow returns it unchanged.

        Raises:
            WorkflowNotFoundError: unknown id.
            WorkflowFinishedError: the workflow already ended in another status.
        """
        ...

    # -- signals -----------------------------------------------------------------

    async def resume_workflow(self, workflow_id: str, *, now: int) -> WorkflowRecord:
        """The operator's resume (see :data:`~durably.models.RESUME_TRANSITIONS`), in
        one transaction: PARKED becomes PENDING as it is; FAILED becomes PENDING
        without its failed body operations and their attempts (those steps run again);
        COMPENSATION_FAILED becomes COMPENSATING without its failed compensations.
        The workflow is left unowned, not due before ``now``, with no recovery
        attempt, no finish time and (unless compensating) no error.

        Raises:
            WorkflowNotFoundError: no such workflow.
            InvalidTransitionError: it is in another status (nothing changes).
        """
        ...

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
        """Append a signal to the workflow's inbox and wake it if it is ``SUSPENDED``
        (``wake_at`` set to ``now``), in one transaction.

        Returns:
            ``(signal, True)`` when appended; ``(existing, False)`` when a signal with
            the same ``dedup_key`` was already sent to this workflow.

        Raises:
            WorkflowNotFoundError: unknown id.
            WorkflowFinishedError: the workflow is terminal.
        """
        ...

    async def consume_signal(self, fence: Fence, operation: OperationRecord) -> SignalRecord | None:
        """Consume the oldest unconsumed signal named ``operation.name`` (FIFO by id)
        for the operation at ``operation.seq``, fenced, in one transaction.

        On success the signal's ``consumed_seq``/``consumed_at`` are set and the
        operation is recorded as ``COMPLETED`` with the signal's payload and
        serializer. When there is none, nothing is written.

        Raises:
            LeaseLostError: ``fence`` no longer matches; nothing was written.
        """
        ...

    async def list_signals(self, workflow_id: str) -> list[SignalRecord]:
        """The workflow's inbox, consumed or not, oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class StoreChange:
    """A change another process made, as told by a :class:`ChangeFeed`.

    ``kind`` is ``"work"`` (something may have become claimable: a new workflow,
    released leases, a workflow made due), ``"signal"`` (a signal arrived for
    ``workflow_id``), ``"cancel"`` (its cancellation was requested), ``"workflow"``
    (it finished) or ``"progress"`` (it recorded an operation of
    :data:`~durably.models.PUBLISHED_KINDS`: an event or a stream entry).
    """

    kind: Literal["work", "signal", "cancel", "workflow", "progress"]
    workflow_id: str | None = None


@runtime_checkable
class ChangeFeed(Protocol):
    """A store that can tell every process about changes as they commit (PostgreSQL
    LISTEN/NOTIFY). Stores without it are polled; with it, polling is the safety net.
    """

    def changes(self) -> AsyncGenerator[StoreChange, None]:
        """Changes, forever, until the iteration is closed; after a lost connection a
        ``"work"`` change comes first (changes in between are lost: look again)."""
        ...

"""Contract: the operator's resume of a parked or failed workflow."""

from __future__ import annotations

import pytest

from durably.errors import InvalidTransitionError, WorkflowNotFoundError
from durably.models import OperationKind, OperationStatus, WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    LEASE,
    NOW,
    attempt,
    claimed,
    operation,
    stored,
)

ERROR = '{"type": "ValueError", "message": "boom"}'
LATER = NOW + 2 * LEASE


async def failed_at_step_one(store: Store, status: WorkflowStatus) -> None:
    """w-1: step 0 completed, step 1 failed after two attempts, then ``status``;
    a compensation of step 0 at seq -1, failed when ``status`` is COMPENSATION_FAILED."""
    fence = await claimed(store)
    await store.record_operation(fence, operation(seq=0))
    for number in (1, 2):
        await store.record_attempt(fence, attempt(seq=1, number=number))
    await store.record_operation(
        fence, operation(seq=1, status=OperationStatus.FAILED, result=None, error=ERROR)
    )
    if status is WorkflowStatus.COMPENSATION_FAILED:
        await store.set_workflow_status(fence, WorkflowStatus.COMPENSATING, now=NOW)
        await store.record_attempt(fence, attempt(seq=-1, number=1))
        await store.record_operation(
            fence,
            operation(
                seq=-1,
                kind=OperationKind.COMPENSATION,
                status=OperationStatus.FAILED,
                result=None,
                error=ERROR,
            ),
        )
    await store.set_workflow_status(fence, status, now=NOW, error=ERROR)


class ResumeContract:
    """resume_workflow."""

    async def test_a_parked_workflow_becomes_pending_with_its_history(self, store: Store) -> None:
        """PARKED → PENDING, unowned, no error, no recovery attempt; nothing forgotten."""
        fence = await claimed(store)
        await store.record_operation(fence, operation(seq=0))
        await store.set_workflow_status(fence, WorkflowStatus.PARKED, now=NOW, error=ERROR)
        resumed = await store.resume_workflow("w-1", now=LATER)
        assert (resumed.status, resumed.owner, resumed.lease_until, resumed.error) == (
            WorkflowStatus.PENDING,
            None,
            None,
            None,
        )
        assert (resumed.recovery_attempts, resumed.finished_at, resumed.updated_at) == (
            0,
            None,
            LATER,
        )
        assert resumed == await stored(store)
        assert list((await store.load_history("w-1")).operations) == [0]
        claimed_again = await store.claim_workflow(
            "w-1", owner="exec-b", now=LATER, lease_until=LATER + LEASE
        )
        assert claimed_again is not None and claimed_again.recovery_attempts == 0

    async def test_a_failed_workflow_forgets_its_failed_step(self, store: Store) -> None:
        """FAILED → PENDING: the failed step and its attempts are gone, so it runs
        again; completed steps stay recorded."""
        await failed_at_step_one(store, WorkflowStatus.FAILED)
        resumed = await store.resume_workflow("w-1", now=LATER)
        assert (resumed.status, resumed.error, resumed.finished_at) == (
            WorkflowStatus.PENDING,
            None,
            None,
        )
        history = await store.load_history("w-1")
        assert list(history.operations) == [0]
        assert history.attempts == {}

    async def test_compensation_failed_retries_only_the_failed_compensations(
        self, store: Store
    ) -> None:
        """COMPENSATION_FAILED → COMPENSATING: the failed compensation (negative seq)
        and its attempts are gone; the body's failure and the error stay."""
        await failed_at_step_one(store, WorkflowStatus.COMPENSATION_FAILED)
        resumed = await store.resume_workflow("w-1", now=LATER)
        assert (resumed.status, resumed.owner, resumed.error) == (
            WorkflowStatus.COMPENSATING,
            None,
            ERROR,
        )
        history = await store.load_history("w-1")
        assert sorted(history.operations) == [0, 1]
        assert history.operations[1].status is OperationStatus.FAILED
        assert sorted(history.attempts) == [1]

    @pytest.mark.parametrize(
        "status", [WorkflowStatus.RUNNING, WorkflowStatus.COMPLETED, WorkflowStatus.CANCELLED]
    )
    async def test_other_statuses_are_refused_and_left_alone(
        self, store: Store, status: WorkflowStatus
    ) -> None:
        """Only stopped workflows are resumed; the refusal changes nothing."""
        fence = await claimed(store)
        await store.record_operation(fence, operation(seq=0))
        if status is not WorkflowStatus.RUNNING:
            await store.set_workflow_status(fence, status, now=NOW, result="1")
        before = await stored(store)
        with pytest.raises(InvalidTransitionError, match="can be resumed"):
            await store.resume_workflow("w-1", now=LATER)
        assert await stored(store) == before
        assert list((await store.load_history("w-1")).operations) == [0]

    async def test_an_unknown_workflow_is_not_found(self, store: Store) -> None:
        """A clear error, not None."""
        with pytest.raises(WorkflowNotFoundError):
            await store.resume_workflow("nobody", now=NOW)

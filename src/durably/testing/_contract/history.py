"""Contract: recording operations and attempts, fenced, and loading the history."""

from __future__ import annotations

import pytest

from durably.errors import LeaseLostError
from durably.models import Fence, OperationKind, OperationStatus, WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    LEASE,
    NOW,
    attempt,
    claimed,
    operation,
    stored,
    workflow,
)


class HistoryContract:
    """load_history, record_operation and record_attempt."""

    async def test_an_unrecorded_workflow_has_an_empty_history(self, store: Store) -> None:
        """No operations and no attempts, for a new or an unknown workflow."""
        await store.create_workflow(workflow())
        for workflow_id in ("w-1", "missing"):
            history = await store.load_history(workflow_id)
            assert (history.operations, history.attempts) == ({}, {})

    @pytest.mark.parametrize("kind", list(OperationKind))
    @pytest.mark.parametrize("status", list(OperationStatus))
    async def test_every_operation_field_round_trips(
        self, store: Store, kind: OperationKind, status: OperationStatus
    ) -> None:
        """An operation of any kind and status comes back exactly as recorded."""
        fence = await claimed(store)
        recorded = operation(
            seq=3,
            kind=kind,
            name="charge card",
            status=status,
            result='{"id": 1}',
            error='{"type": "X", "message": "m"}',
            serializer="custom",
            attempts=4,
            started_at=NOW + 1,
            finished_at=NOW + 2,
            wake_at=NOW + 3,
        )
        await store.record_operation(fence, recorded)
        assert (await store.load_history("w-1")).operations == {3: recorded}

    async def test_optional_operation_fields_round_trip_as_none(self, store: Store) -> None:
        """Missing result, error, finished_at and wake_at stay None."""
        fence = await claimed(store)
        waiting = operation(
            status=OperationStatus.WAITING, result=None, error=None, finished_at=None
        )
        await store.record_operation(fence, waiting)
        assert (await store.load_history("w-1")).operations == {0: waiting}

    async def test_compensations_are_kept_at_negative_sequence_numbers(self, store: Store) -> None:
        """seq -1, -2 ... are stored beside the body's operations."""
        fence = await claimed(store)
        body = operation(seq=0)
        first = operation(seq=-1, kind=OperationKind.COMPENSATION, name="refund")
        second = operation(seq=-2, kind=OperationKind.COMPENSATION, name="release")
        for recorded in (body, first, second):
            await store.record_operation(fence, recorded)
        assert (await store.load_history("w-1")).operations == {0: body, -1: first, -2: second}

    async def test_recording_the_same_seq_again_replaces_the_operation(self, store: Store) -> None:
        """record_operation inserts or replaces at (workflow_id, seq)."""
        fence = await claimed(store)
        await store.record_operation(
            fence, operation(status=OperationStatus.WAITING, result=None, wake_at=NOW + 9)
        )
        final = operation(result='"done"')
        await store.record_operation(fence, final)
        assert (await store.load_history("w-1")).operations == {0: final}

    async def test_recording_refreshes_updated_at_to_the_finish(self, store: Store) -> None:
        """A finished operation moves the workflow's updated_at to its finished_at."""
        fence = await claimed(store)
        await store.record_operation(fence, operation(finished_at=NOW + 500))
        assert (await stored(store)).updated_at == NOW + 500

    async def test_recording_an_unfinished_operation_refreshes_updated_at_to_its_start(
        self, store: Store
    ) -> None:
        """Without finished_at, started_at is used."""
        fence = await claimed(store)
        await store.record_operation(
            fence,
            operation(status=OperationStatus.WAITING, started_at=NOW + 300, finished_at=None),
        )
        assert (await stored(store)).updated_at == NOW + 300

    async def test_histories_of_workflows_are_separate(self, store: Store) -> None:
        """Each workflow loads only its own operations."""
        first = await claimed(store, "w-1")
        second = await claimed(store, "w-2")
        await store.record_operation(first, operation("w-1", name="a"))
        await store.record_operation(second, operation("w-2", name="b"))
        assert [op.name for op in (await store.load_history("w-1")).operations.values()] == ["a"]

    async def test_every_attempt_field_round_trips(self, store: Store) -> None:
        """Failed attempts come back exactly, grouped by seq and ordered by attempt."""
        fence = await claimed(store)
        second = attempt(seq=2, number=2, next_attempt_at=None)
        first = attempt(seq=2, number=1, error='{"e": 1}', started_at=NOW - 5, finished_at=NOW)
        other = attempt(seq=-1, number=1)
        for recorded in (second, first, other):
            await store.record_attempt(fence, recorded)
        assert (await store.load_history("w-1")).attempts == {2: [first, second], -1: [other]}

    async def test_recording_the_same_attempt_again_keeps_one(self, store: Store) -> None:
        """An attempt is unique per (workflow_id, seq, attempt): the last write wins."""
        fence = await claimed(store)
        await store.record_attempt(fence, attempt(error='{"v": 1}'))
        await store.record_attempt(fence, attempt(error='{"v": 2}'))
        assert (await store.load_history("w-1")).attempts == {0: [attempt(error='{"v": 2}')]}

    # -- fencing ---------------------------------------------------------------------

    async def test_an_operation_with_a_stale_fence_is_refused_and_not_written(
        self, store: Store
    ) -> None:
        """After another executor took over, the old owner's write raises LeaseLostError."""
        stale = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        await store.claim_workflow("w-1", owner="exec-b", now=NOW, lease_until=NOW + LEASE)
        before = await stored(store)
        with pytest.raises(LeaseLostError):
            await store.record_operation(stale, operation())
        assert (await store.load_history("w-1")).operations == {}
        assert await stored(store) == before

    async def test_an_older_fence_of_the_same_owner_is_refused(self, store: Store) -> None:
        """Re-claiming by the same executor makes its earlier fence stale."""
        stale = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        await store.claim_workflow("w-1", owner="exec-a", now=NOW, lease_until=NOW + LEASE)
        with pytest.raises(LeaseLostError):
            await store.record_operation(stale, operation())
        assert (await store.load_history("w-1")).operations == {}

    async def test_an_expired_lease_still_writes_until_someone_claims(self, store: Store) -> None:
        """Fencing compares owner and fence only; time alone does not revoke a write."""
        await store.create_workflow(workflow(status=WorkflowStatus.RUNNING))
        record = await store.claim_workflow("w-1", owner="exec-a", now=NOW, lease_until=NOW + 1)
        assert record is not None
        fence = Fence(workflow_id="w-1", owner="exec-a", fence=record.fence)
        await store.record_operation(fence, operation())
        assert 0 in (await store.load_history("w-1")).operations

    async def test_a_fenced_write_to_an_unknown_workflow_is_refused(self, store: Store) -> None:
        """No row, no ownership."""
        fence = Fence(workflow_id="missing", owner="exec-a", fence=1)
        with pytest.raises(LeaseLostError):
            await store.record_operation(fence, operation("missing"))
        with pytest.raises(LeaseLostError):
            await store.record_attempt(fence, attempt("missing"))

    async def test_a_finished_workflow_refuses_its_former_owner(self, store: Store) -> None:
        """A terminal status releases ownership, so the old fence writes nothing more."""
        fence = await claimed(store)
        await store.set_workflow_status(fence, WorkflowStatus.COMPLETED, now=NOW)
        with pytest.raises(LeaseLostError):
            await store.record_operation(fence, operation())

    async def test_an_attempt_with_a_stale_fence_is_refused_and_not_written(
        self, store: Store
    ) -> None:
        """record_attempt is fenced like record_operation."""
        stale = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        with pytest.raises(LeaseLostError):
            await store.record_attempt(stale, attempt())
        assert (await store.load_history("w-1")).attempts == {}

"""Contract: status changes (compare-and-set), suspension and cancellation."""

from __future__ import annotations

import pytest

from durably.errors import LeaseLostError, WorkflowFinishedError, WorkflowNotFoundError
from durably.models import (
    TERMINAL_STATUSES,
    WorkflowStatus,
    is_allowed_transition,
)
from durably.store.base import Store
from durably.testing._contract.records import (
    NOW,
    claimed,
    fence_of,
    owned,
    send,
    signal_wait,
    stored,
    workflow,
)

#: Terminal statuses and, for each, a live status the engine reaches it from.
TERMINAL_PATHS = [
    (WorkflowStatus.COMPLETED, WorkflowStatus.RUNNING),
    (WorkflowStatus.FAILED, WorkflowStatus.RUNNING),
    (WorkflowStatus.CANCELLED, WorkflowStatus.RUNNING),
    (WorkflowStatus.COMPENSATED, WorkflowStatus.COMPENSATING),
    (WorkflowStatus.COMPENSATION_FAILED, WorkflowStatus.COMPENSATING),
]
ENDED_OTHERWISE = sorted(TERMINAL_STATUSES - {WorkflowStatus.CANCELLED})


class StatusContract:
    """set_workflow_status, suspend_workflow and request_cancel."""

    @pytest.mark.parametrize("current", list(WorkflowStatus))
    async def test_only_allowed_transitions_are_made(
        self, store: Store, current: WorkflowStatus
    ) -> None:
        """From each status, exactly the targets of models.ALLOWED_TRANSITIONS (or
        itself) succeed; any other target raises LeaseLostError and writes nothing."""
        for new in WorkflowStatus:
            record = owned(f"to-{new}", status=current)
            await store.create_workflow(record)
            if is_allowed_transition(current, new):
                changed = await store.set_workflow_status(fence_of(record), new, now=NOW + 1)
                assert changed.status is new
                assert await stored(store, record.workflow_id) == changed
            else:
                with pytest.raises(LeaseLostError):
                    await store.set_workflow_status(fence_of(record), new, now=NOW + 1)
                assert await stored(store, record.workflow_id) == record

    @pytest.mark.parametrize(("terminal", "source"), TERMINAL_PATHS)
    async def test_a_terminal_status_releases_ownership_and_stamps_finished_at(
        self, store: Store, terminal: WorkflowStatus, source: WorkflowStatus
    ) -> None:
        """owner and lease_until are cleared; finished_at and updated_at become now."""
        record = owned(status=source)
        await store.create_workflow(record)
        changed = await store.set_workflow_status(fence_of(record), terminal, now=NOW + 3)
        assert (changed.owner, changed.lease_until, changed.finished_at, changed.updated_at) == (
            None,
            None,
            NOW + 3,
            NOW + 3,
        )

    async def test_parking_releases_ownership_without_finishing(self, store: Store) -> None:
        """PARKED gives up the lease but sets no finished_at."""
        fence = await claimed(store)
        changed = await store.set_workflow_status(fence, WorkflowStatus.PARKED, now=NOW + 1)
        assert (changed.status, changed.owner, changed.lease_until, changed.finished_at) == (
            WorkflowStatus.PARKED,
            None,
            None,
            None,
        )

    async def test_a_live_status_keeps_ownership(self, store: Store) -> None:
        """Moving to COMPENSATING keeps the owner, fence and lease."""
        fence = await claimed(store)
        before = await stored(store)
        changed = await store.set_workflow_status(fence, WorkflowStatus.COMPENSATING, now=NOW)
        assert (changed.owner, changed.fence, changed.lease_until, changed.finished_at) == (
            before.owner,
            before.fence,
            before.lease_until,
            None,
        )

    async def test_result_and_error_are_stored_when_given(self, store: Store) -> None:
        """The given payloads are written with the status."""
        fence = await claimed(store)
        changed = await store.set_workflow_status(
            fence, WorkflowStatus.FAILED, now=NOW, result='"r"', error='{"type": "E"}'
        )
        assert (changed.result, changed.error) == ('"r"', '{"type": "E"}')

    async def test_result_and_error_are_kept_when_not_given(self, store: Store) -> None:
        """None leaves the stored payloads as they were."""
        record = owned(result='"old"', error='{"type": "Old"}')
        await store.create_workflow(record)
        changed = await store.set_workflow_status(fence_of(record), WorkflowStatus.PARKED, now=NOW)
        assert (changed.result, changed.error) == ('"old"', '{"type": "Old"}')

    async def test_a_status_change_with_a_stale_fence_is_refused(self, store: Store) -> None:
        """set_workflow_status is fenced: a lost owner changes nothing."""
        stale = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        before = await stored(store)
        with pytest.raises(LeaseLostError):
            await store.set_workflow_status(stale, WorkflowStatus.COMPLETED, now=NOW)
        assert await stored(store) == before

    @pytest.mark.parametrize(
        "wanted", [WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.PARKED]
    )
    async def test_a_releasing_change_asked_again_by_its_fence_is_made(
        self, store: Store, wanted: WorkflowStatus
    ) -> None:
        """The same change asked twice (a statement retried after its reply was lost,
        perhaps after it committed) finds it made and returns the record: not a
        refusal, although the first one cleared the owner the second one matches."""
        fence = await claimed(store)
        first = await store.set_workflow_status(fence, wanted, now=NOW + 1, result='"r"')
        again = await store.set_workflow_status(fence, wanted, now=NOW + 2, result='"r"')
        assert again == first
        assert await stored(store) == first

    async def test_a_change_made_under_a_newer_fence_refuses_the_older_one(
        self, store: Store
    ) -> None:
        """Only the fence that made a releasing change finds it made: an older owner
        asking for the same status is refused (someone claimed it since)."""
        old = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        newer = await store.claim_workflow("w-1", owner="exec-b", now=NOW, lease_until=NOW + 5)
        assert newer is not None
        made = await store.set_workflow_status(
            fence_of(newer), WorkflowStatus.COMPLETED, now=NOW + 1
        )
        with pytest.raises(LeaseLostError):
            await store.set_workflow_status(old, WorkflowStatus.COMPLETED, now=NOW + 2)
        assert await stored(store) == made

    # -- suspend_workflow ------------------------------------------------------------

    async def test_suspending_records_the_timer_and_releases_ownership(self, store: Store) -> None:
        """The workflow is SUSPENDED, unowned, with its wake_at and wait_reason."""
        fence = await claimed(store)
        record = await store.suspend_workflow(
            fence, now=NOW + 1, wake_at=NOW + 60, wait_reason="sleep 'nap'"
        )
        assert (record.status, record.owner, record.lease_until) == (
            WorkflowStatus.SUSPENDED,
            None,
            None,
        )
        assert (record.wake_at, record.wait_reason, record.fence) == (
            NOW + 60,
            "sleep 'nap'",
            fence.fence,
        )
        assert await stored(store) == record

    async def test_suspending_without_a_timer_waits_for_a_signal(self, store: Store) -> None:
        """wake_at None: only a signal wakes it, so it is not claimable."""
        fence = await claimed(store)
        record = await store.suspend_workflow(
            fence, now=NOW, wake_at=None, wait_reason="signal go", waiting_for_signal="go"
        )
        assert record.wake_at is None
        assert (
            await store.claim_workflow("w-1", owner="b", now=NOW + 10**9, lease_until=NOW) is None
        )

    async def test_suspending_with_a_waiting_signal_is_due_at_once(self, store: Store) -> None:
        """A signal already in the inbox sets wake_at to now (no lost wake-up)."""
        fence = await claimed(store)
        await send(store, name="go")
        record = await store.suspend_workflow(
            fence, now=NOW + 1, wake_at=None, wait_reason="signal go", waiting_for_signal="go"
        )
        assert record.wake_at == NOW + 1

    async def test_suspending_ignores_consumed_and_other_signals(self, store: Store) -> None:
        """Only an unconsumed signal of the awaited name makes it due."""
        fence = await claimed(store)
        await send(store, name="go")
        await send(store, name="other")
        await store.consume_signal(fence, signal_wait(name="go"))
        record = await store.suspend_workflow(
            fence, now=NOW + 1, wake_at=NOW + 50, wait_reason="w", waiting_for_signal="go"
        )
        assert record.wake_at == NOW + 50

    async def test_only_a_running_workflow_can_suspend(self, store: Store) -> None:
        """A COMPENSATING workflow is refused with LeaseLostError and left as it was."""
        record = owned(status=WorkflowStatus.COMPENSATING)
        await store.create_workflow(record)
        with pytest.raises(LeaseLostError):
            await store.suspend_workflow(fence_of(record), now=NOW, wake_at=None, wait_reason="x")
        assert await stored(store) == record

    async def test_suspending_with_a_stale_fence_is_refused(self, store: Store) -> None:
        """suspend_workflow is fenced."""
        stale = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        before = await stored(store)
        with pytest.raises(LeaseLostError):
            await store.suspend_workflow(stale, now=NOW, wake_at=None, wait_reason="x")
        assert await stored(store) == before

    async def test_suspending_asked_again_by_its_fence_is_made(self, store: Store) -> None:
        """A suspension asked twice (retried after its reply was lost) returns the
        record as the first one left it."""
        fence = await claimed(store)
        first = await store.suspend_workflow(fence, now=NOW + 1, wake_at=NOW + 60, wait_reason="x")
        again = await store.suspend_workflow(fence, now=NOW + 2, wake_at=NOW + 90, wait_reason="y")
        assert again == first
        assert await stored(store) == first

    async def test_suspending_after_a_cancel_request_is_due_at_once(self, store: Store) -> None:
        """A cancellation that arrived while it ran is not lost by suspending."""
        fence = await claimed(store)
        await store.request_cancel("w-1", compensate=False, now=NOW)
        record = await store.suspend_workflow(
            fence, now=NOW + 2, wake_at=None, wait_reason="signal go", waiting_for_signal="go"
        )
        assert record.wake_at == NOW + 2

    # -- request_cancel --------------------------------------------------------------

    @pytest.mark.parametrize(
        "status", [WorkflowStatus.PENDING, WorkflowStatus.SUSPENDED, WorkflowStatus.PARKED]
    )
    async def test_cancelling_an_idle_workflow_ends_it_at_once(
        self, store: Store, status: WorkflowStatus
    ) -> None:
        """Nobody runs it: without compensate it becomes CANCELLED, finished now.

        (PARKED is included: it waits for an operator, and cancelling is such an act.)
        """
        await store.create_workflow(workflow(status=status, wake_at=NOW + 9))
        record = await store.request_cancel("w-1", compensate=False, now=NOW + 1)
        assert (record.status, record.finished_at, record.owner) == (
            WorkflowStatus.CANCELLED,
            NOW + 1,
            None,
        )
        assert record.cancel_requested and not record.compensate_on_cancel
        assert await stored(store) == record

    async def test_cancelling_a_workflow_whose_lease_expired_ends_it(self, store: Store) -> None:
        """A PENDING workflow whose owner's lease ran out has no live owner."""
        await store.create_workflow(owned(status=WorkflowStatus.PENDING, lease_until=NOW - 1))
        record = await store.request_cancel("w-1", compensate=False, now=NOW)
        assert record.status is WorkflowStatus.CANCELLED

    @pytest.mark.parametrize("status", [WorkflowStatus.PENDING, WorkflowStatus.SUSPENDED])
    async def test_cancelling_with_compensation_makes_an_idle_workflow_due(
        self, store: Store, status: WorkflowStatus
    ) -> None:
        """With compensate, wake_at becomes now so that an executor runs compensations."""
        await store.create_workflow(workflow(status=status, wake_at=None))
        record = await store.request_cancel("w-1", compensate=True, now=NOW + 1)
        assert (record.status, record.wake_at) == (status, NOW + 1)
        assert record.cancel_requested and record.compensate_on_cancel
        claimed_now = await store.claim_workflow("w-1", owner="b", now=NOW + 1, lease_until=NOW)
        assert claimed_now is not None and claimed_now.cancel_requested

    async def test_cancelling_a_parked_workflow_with_compensation_wakes_it(
        self, store: Store
    ) -> None:
        """PARKED is never claimed, so it becomes SUSPENDED and due now."""
        await store.create_workflow(workflow(status=WorkflowStatus.PARKED))
        record = await store.request_cancel("w-1", compensate=True, now=NOW)
        assert (record.status, record.wake_at) == (WorkflowStatus.SUSPENDED, NOW)

    @pytest.mark.parametrize(
        "status",
        [WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING, WorkflowStatus.PENDING],
    )
    async def test_cancelling_an_owned_workflow_only_sets_the_flag(
        self, store: Store, status: WorkflowStatus
    ) -> None:
        """Its live owner sees the flag (renew_leases returns it) and acts on it."""
        record = owned(status=status)
        await store.create_workflow(record)
        changed = await store.request_cancel("w-1", compensate=True, now=NOW)
        assert (changed.status, changed.owner, changed.fence, changed.wake_at) == (
            status,
            record.owner,
            record.fence,
            record.wake_at,
        )
        assert changed.cancel_requested and changed.compensate_on_cancel
        assert await store.renew_leases(owner="exec-a", now=NOW, lease_until=NOW + 9) == ["w-1"]

    async def test_cancelling_a_crashed_running_workflow_leaves_it_to_recovery(
        self, store: Store
    ) -> None:
        """RUNNING with an expired lease keeps its status: whoever recovers it sees the flag."""
        await store.create_workflow(owned(lease_until=NOW - 1))
        record = await store.request_cancel("w-1", compensate=False, now=NOW)
        assert (record.status, record.cancel_requested) == (WorkflowStatus.RUNNING, True)
        recovered = await store.claim_workflow("w-1", owner="b", now=NOW, lease_until=NOW + 9)
        assert recovered is not None and recovered.cancel_requested

    async def test_a_later_request_does_not_drop_compensation(self, store: Store) -> None:
        """Once compensation was asked for, a plain cancel keeps it."""
        await claimed(store)
        await store.request_cancel("w-1", compensate=True, now=NOW)
        record = await store.request_cancel("w-1", compensate=False, now=NOW)
        assert record.compensate_on_cancel

    async def test_cancelling_a_cancelled_workflow_returns_it_unchanged(self, store: Store) -> None:
        """A repeated cancel is harmless."""
        await store.create_workflow(workflow())
        first = await store.request_cancel("w-1", compensate=False, now=NOW)
        assert await store.request_cancel("w-1", compensate=True, now=NOW + 5) == first
        assert await stored(store) == first

    @pytest.mark.parametrize("status", ENDED_OTHERWISE)
    async def test_cancelling_a_finished_workflow_is_refused(
        self, store: Store, status: WorkflowStatus
    ) -> None:
        """WorkflowFinishedError, and the workflow is unchanged."""
        record = workflow(status=status, finished_at=NOW)
        await store.create_workflow(record)
        with pytest.raises(WorkflowFinishedError):
            await store.request_cancel("w-1", compensate=False, now=NOW)
        assert await stored(store) == record

    async def test_cancelling_an_unknown_workflow_is_refused(self, store: Store) -> None:
        """WorkflowNotFoundError."""
        with pytest.raises(WorkflowNotFoundError):
            await store.request_cancel("missing", compensate=False, now=NOW)

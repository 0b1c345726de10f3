"""Contract: which workflows can be claimed, and what a claim changes."""

from __future__ import annotations

import asyncio

import pytest

from durably.models import TERMINAL_STATUSES, WorkflowRecord, WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    LEASE,
    NOW,
    claimed,
    ids,
    owned,
    stored,
    workflow,
)

#: Workflows that no claim may take at NOW, each with the reason as its id.
UNCLAIMABLE = [
    workflow("parked", status=WorkflowStatus.PARKED),
    *(workflow(f"terminal-{status}", status=status) for status in sorted(TERMINAL_STATUSES)),
    owned("running-live-lease", owner="other", lease_until=NOW + 1),
    owned("running-lease-ends-now", owner="other", lease_until=NOW),
    owned("pending-live-lease", owner="other", status=WorkflowStatus.PENDING),
    owned("compensating-live-lease", owner="other", status=WorkflowStatus.COMPENSATING),
    workflow("suspended-future-timer", status=WorkflowStatus.SUSPENDED, wake_at=NOW + 1),
    workflow("suspended-no-timer", status=WorkflowStatus.SUSPENDED, wake_at=None),
]


async def claim(store: Store, workflow_id: str, owner: str = "exec-b") -> WorkflowRecord | None:
    """claim_workflow at NOW with a lease of LEASE."""
    return await store.claim_workflow(workflow_id, owner=owner, now=NOW, lease_until=NOW + LEASE)


class ClaimsContract:
    """claim_workflow and claim_due_workflows."""

    async def test_claiming_a_pending_workflow_starts_it(self, store: Store) -> None:
        """A new workflow becomes RUNNING, owned, fenced, leased, with no recovery attempt."""
        await store.create_workflow(workflow(fence=5, recovery_attempts=2))
        record = await claim(store, "w-1", owner="exec-b")
        assert record is not None
        assert (record.status, record.owner, record.fence, record.lease_until) == (
            WorkflowStatus.RUNNING,
            "exec-b",
            6,
            NOW + LEASE,
        )
        assert record.recovery_attempts == 0
        assert await stored(store) == record

    async def test_claim_leaves_other_fields_alone(self, store: Store) -> None:
        """Only the ownership fields, status, wake_at and recovery_attempts change."""
        original = workflow(input='{"x": 1}', deadline_at=NOW + 9, wait_reason=None)
        await store.create_workflow(original)
        record = await claim(store, "w-1")
        assert record is not None
        assert (record.input, record.deadline_at, record.version, record.created_at) == (
            original.input,
            original.deadline_at,
            original.version,
            original.created_at,
        )

    async def test_a_running_workflow_with_an_expired_lease_is_recovered(
        self, store: Store
    ) -> None:
        """Its previous run did not end: recovery_attempts goes up by one."""
        await store.create_workflow(owned(lease_until=NOW - 1, recovery_attempts=2))
        record = await claim(store, "w-1")
        assert record is not None
        assert (record.owner, record.fence, record.recovery_attempts) == ("exec-b", 2, 3)
        assert record.status is WorkflowStatus.RUNNING

    async def test_a_released_running_workflow_is_recovered(self, store: Store) -> None:
        """RUNNING without an owner is claimable at once, as a recovery."""
        await store.create_workflow(workflow(status=WorkflowStatus.RUNNING, fence=3))
        record = await claim(store, "w-1")
        assert record is not None and (record.fence, record.recovery_attempts) == (4, 1)

    async def test_an_owner_without_a_lease_holds_nothing(self, store: Store) -> None:
        """A row with an owner but no lease_until is claimable (it could not expire)."""
        await store.create_workflow(owned(owner="other", lease_until=None))
        record = await claim(store, "w-1")
        assert record is not None and record.owner == "exec-b"

    async def test_a_compensating_workflow_stays_compensating(self, store: Store) -> None:
        """Recovering a workflow halfway through compensation keeps its status."""
        await store.create_workflow(owned(status=WorkflowStatus.COMPENSATING, lease_until=NOW - 1))
        record = await claim(store, "w-1")
        assert record is not None
        assert (record.status, record.recovery_attempts) == (WorkflowStatus.COMPENSATING, 1)

    async def test_a_pending_workflow_with_an_expired_lease_is_claimed(self, store: Store) -> None:
        """A starter that died before running it does not keep it."""
        await store.create_workflow(
            owned(status=WorkflowStatus.PENDING, lease_until=NOW - 1, recovery_attempts=4)
        )
        record = await claim(store, "w-1")
        assert record is not None
        assert (record.status, record.recovery_attempts) == (WorkflowStatus.RUNNING, 0)

    @pytest.mark.parametrize("wake_at", [NOW - 1, NOW], ids=["past", "now"])
    async def test_a_suspended_workflow_whose_timer_is_due_is_woken(
        self, store: Store, wake_at: int
    ) -> None:
        """It becomes RUNNING with wake_at cleared and recovery_attempts reset."""
        await store.create_workflow(
            workflow(status=WorkflowStatus.SUSPENDED, wake_at=wake_at, recovery_attempts=3)
        )
        record = await claim(store, "w-1")
        assert record is not None
        assert (record.status, record.wake_at, record.recovery_attempts) == (
            WorkflowStatus.RUNNING,
            None,
            0,
        )

    @pytest.mark.parametrize("record", UNCLAIMABLE, ids=lambda record: record.workflow_id)
    async def test_an_unclaimable_workflow_is_not_claimed(
        self, store: Store, record: WorkflowRecord
    ) -> None:
        """claim_workflow returns None and changes nothing."""
        await store.create_workflow(record)
        assert await claim(store, record.workflow_id) is None
        assert await stored(store, record.workflow_id) == record

    async def test_claiming_an_unknown_workflow_returns_none(self, store: Store) -> None:
        """There is nothing to claim."""
        assert await claim(store, "missing") is None

    async def test_the_owner_cannot_claim_its_own_live_lease_again(self, store: Store) -> None:
        """A live lease is not claimable, whoever asks."""
        fence = await claimed(store, owner="exec-a")
        assert await claim(store, "w-1", owner="exec-a") is None
        assert (await stored(store)).fence == fence.fence

    async def test_every_claim_increments_the_fence(self, store: Store) -> None:
        """Each new ownership gets a new fence, even for the same owner."""
        first = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        second = await claim(store, "w-1", owner="exec-a")
        assert second is not None and second.fence == first.fence + 1

    async def test_concurrent_claims_of_one_workflow_have_one_winner(self, store: Store) -> None:
        """Racing claim_workflow calls: exactly one gets the workflow."""
        await store.create_workflow(workflow())
        results = await asyncio.gather(*(claim(store, "w-1", owner=f"e{n}") for n in range(10)))
        winners = [record for record in results if record is not None]
        assert len(winners) == 1
        assert (await stored(store)).owner == winners[0].owner

    # -- claim_due_workflows ---------------------------------------------------------

    async def test_claim_due_claims_like_claim_workflow(self, store: Store) -> None:
        """Each claimed workflow gets the same changes as claim_workflow makes."""
        await store.create_workflow(workflow("new", fence=2))
        await store.create_workflow(owned("crashed", lease_until=NOW - 1, recovery_attempts=1))
        await store.create_workflow(
            owned("compensating", status=WorkflowStatus.COMPENSATING, lease_until=NOW - 1)
        )
        await store.create_workflow(
            workflow("timer", status=WorkflowStatus.SUSPENDED, wake_at=NOW, recovery_attempts=2)
        )
        claimed_now = await store.claim_due_workflows(
            owner="exec-b", names=["checkout"], now=NOW, lease_until=NOW + LEASE, limit=10
        )
        by_id = {record.workflow_id: record for record in claimed_now}
        assert {(r.owner, r.lease_until, r.wake_at) for r in claimed_now} == {
            ("exec-b", NOW + LEASE, None)
        }
        assert (by_id["new"].status, by_id["new"].fence, by_id["new"].recovery_attempts) == (
            WorkflowStatus.RUNNING,
            3,
            0,
        )
        assert (by_id["crashed"].fence, by_id["crashed"].recovery_attempts) == (2, 2)
        assert by_id["compensating"].status is WorkflowStatus.COMPENSATING
        assert (by_id["timer"].status, by_id["timer"].recovery_attempts) == (
            WorkflowStatus.RUNNING,
            0,
        )
        for record in claimed_now:
            assert await stored(store, record.workflow_id) == record

    async def test_claim_due_skips_every_unclaimable_workflow(self, store: Store) -> None:
        """Parked, terminal, live-leased and not-yet-due workflows are left alone."""
        for record in UNCLAIMABLE:
            await store.create_workflow(record)
        claimed_now = await store.claim_due_workflows(
            owner="exec-b", names=["checkout"], now=NOW, lease_until=NOW + LEASE, limit=100
        )
        assert claimed_now == []
        for record in UNCLAIMABLE:
            assert await stored(store, record.workflow_id) == record

    async def test_claim_due_takes_only_the_given_names(self, store: Store) -> None:
        """Workflows of other names stay for executors that run them."""
        await store.create_workflow(workflow("a", workflow_name="checkout"))
        await store.create_workflow(workflow("b", workflow_name="refund"))
        await store.create_workflow(workflow("c", workflow_name="report"))
        claimed_now = await store.claim_due_workflows(
            owner="x", names={"checkout", "report"}, now=NOW, lease_until=NOW + 1, limit=10
        )
        assert sorted(ids(claimed_now)) == ["a", "c"]
        assert (await stored(store, "b")).owner is None

    async def test_claim_due_with_no_names_claims_nothing(self, store: Store) -> None:
        """An executor running no workflow takes none."""
        await store.create_workflow(workflow())
        assert (
            await store.claim_due_workflows(
                owner="x", names=[], now=NOW, lease_until=NOW + 1, limit=10
            )
            == []
        )

    async def test_claim_due_takes_the_earliest_due_first_and_lists_them_in_order(
        self, store: Store
    ) -> None:
        """Due since: the timer of a suspended workflow, the creation of the others."""
        suspended = WorkflowStatus.SUSPENDED
        await store.create_workflow(workflow("created-3", created_at=NOW - 3))
        await store.create_workflow(workflow("created-5", created_at=NOW - 5))
        await store.create_workflow(
            workflow("timer-4", status=suspended, wake_at=NOW - 4, created_at=NOW - 9)
        )
        await store.create_workflow(
            workflow("timer-1", status=suspended, wake_at=NOW - 1, created_at=NOW - 20)
        )
        await store.create_workflow(workflow("created-3-b", created_at=NOW - 3))
        first = await store.claim_due_workflows(
            owner="x", names=["checkout"], now=NOW, lease_until=NOW + 1, limit=3
        )
        assert ids(first) == ["created-5", "timer-4", "created-3"]
        rest = await store.claim_due_workflows(
            owner="x", names=["checkout"], now=NOW, lease_until=NOW + 1, limit=3
        )
        assert ids(rest) == ["created-3-b", "timer-1"]

    async def test_claim_due_respects_the_limit(self, store: Store) -> None:
        """No more than ``limit`` workflows are claimed per call."""
        for index in range(5):
            await store.create_workflow(workflow(f"w-{index}"))
        claimed_now = await store.claim_due_workflows(
            owner="x", names=["checkout"], now=NOW, lease_until=NOW + 1, limit=2
        )
        assert len(claimed_now) == 2
        assert len(await store.list_workflows(statuses=[WorkflowStatus.PENDING])) == 3

    async def test_concurrent_claim_due_calls_never_take_the_same_workflow(
        self, store: Store
    ) -> None:
        """Executors racing for the work split it without overlap or loss."""
        for index in range(60):
            await store.create_workflow(workflow(f"w-{index:02}"))
        batches = await asyncio.gather(
            *(
                store.claim_due_workflows(
                    owner=f"exec-{n}", names=["checkout"], now=NOW, lease_until=NOW + 9, limit=7
                )
                for n in range(10)
            )
        )
        claimed_ids = [record.workflow_id for batch in batches for record in batch]
        assert len(claimed_ids) == len(set(claimed_ids)) == 60
        for batch in batches:
            for record in batch:
                assert (await stored(store, record.workflow_id)).owner == record.owner

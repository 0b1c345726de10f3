"""Contract: queued workflows are claimed only through their queue, within its limits."""

from __future__ import annotations

import asyncio

from durably.models import QueueLimits, WorkflowRecord, WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    LEASE,
    NOW,
    SECOND,
    fence_of,
    ids,
    owned,
    stored,
    workflow,
)

NAMES = ["checkout"]


async def enqueue(store: Store, *workflow_ids: str, queue: str = "mail", **fields: object) -> None:
    """Create PENDING workflows on ``queue``."""
    for workflow_id in workflow_ids:
        await store.create_workflow(workflow(workflow_id, queue_name=queue, **fields))


async def claim_queue(
    store: Store, queue: QueueLimits, owner: str = "exec-a", *, now: int = NOW, limit: int = 100
) -> list[WorkflowRecord]:
    """claim_queued_workflows at ``now`` with a lease of LEASE."""
    return await store.claim_queued_workflows(
        owner=owner, queue=queue, names=NAMES, now=now, lease_until=now + LEASE, limit=limit
    )


class QueuesContract:
    """claim_queued_workflows, and claim_due_workflows leaving queued workflows alone."""

    async def test_unqueued_claims_never_take_a_queued_workflow(self, store: Store) -> None:
        """Only the queue's claim may start a queued workflow (its limits would be
        bypassed otherwise)."""
        await enqueue(store, "queued")
        await store.create_workflow(workflow("free"))
        claimed = await store.claim_due_workflows(
            owner="exec-a", names=NAMES, now=NOW, lease_until=NOW + LEASE, limit=10
        )
        assert ids(claimed) == ["free"]
        assert ids(await claim_queue(store, QueueLimits(name="mail"))) == ["queued"]

    async def test_a_queue_claim_takes_only_its_own_queue(self, store: Store) -> None:
        """Workflows of other queues, and unqueued ones, are left alone."""
        await enqueue(store, "mail-1")
        await enqueue(store, "sms-1", queue="sms")
        await store.create_workflow(workflow("free"))
        assert ids(await claim_queue(store, QueueLimits(name="mail"))) == ["mail-1"]

    async def test_higher_priorities_are_claimed_first(self, store: Store) -> None:
        """Priority first (highest first), then the oldest."""
        await enqueue(store, "low", priority=0)
        await enqueue(store, "high", priority=5)
        await enqueue(store, "middle-old", priority=1, created_at=NOW - 2)
        await enqueue(store, "middle-new", priority=1, created_at=NOW - 1)
        claimed = await claim_queue(store, QueueLimits(name="mail"), limit=3)
        assert ids(claimed) == ["high", "middle-old", "middle-new"]

    async def test_global_concurrency_counts_every_worker(self, store: Store) -> None:
        """With concurrency 2, two running workflows (of any worker) leave no room; one
        finishing leaves room for one more."""
        await enqueue(store, *(f"w-{n}" for n in range(5)))
        queue = QueueLimits(name="mail", concurrency=2)
        first = await claim_queue(store, queue, "exec-a", limit=1)
        second = await claim_queue(store, queue, "exec-b")
        assert len(first) == len(second) == 1
        assert await claim_queue(store, queue, "exec-c") == []
        await store.set_workflow_status(
            fence_of(first[0]), WorkflowStatus.COMPLETED, now=NOW, result="1"
        )
        assert len(await claim_queue(store, queue, "exec-c")) == 1

    async def test_worker_concurrency_counts_only_the_claiming_worker(self, store: Store) -> None:
        """worker_concurrency 1: each worker gets one."""
        await enqueue(store, *(f"w-{n}" for n in range(5)))
        queue = QueueLimits(name="mail", worker_concurrency=1)
        assert len(await claim_queue(store, queue, "exec-a")) == 1
        assert await claim_queue(store, queue, "exec-a") == []
        assert len(await claim_queue(store, queue, "exec-b")) == 1

    async def test_workflows_whose_lease_ended_do_not_count_as_running(self, store: Store) -> None:
        """A dead worker's workflow does not hold a concurrency slot forever; it is
        itself claimable again."""
        await store.create_workflow(
            owned("stale", owner="dead", lease_until=NOW - 1, queue_name="mail")
        )
        await enqueue(store, "waiting", created_at=NOW + 1)
        claimed = await claim_queue(store, QueueLimits(name="mail", concurrency=1))
        assert ids(claimed) == ["stale"]
        assert (await stored(store, "stale")).recovery_attempts == 1

    async def test_suspended_workflows_free_their_slot(self, store: Store) -> None:
        """A workflow waiting durably (released) does not count as running."""
        await enqueue(store, "sleeper", created_at=NOW - 1)
        await enqueue(store, "next")
        queue = QueueLimits(name="mail", concurrency=1)
        (sleeper,) = await claim_queue(store, queue, limit=1)
        await store.suspend_workflow(
            fence_of(sleeper), now=NOW, wake_at=NOW + 60 * SECOND, wait_reason="sleep"
        )
        assert ids(await claim_queue(store, queue)) == ["next"]

    async def test_rate_limit_counts_starts_in_the_window(self, store: Store) -> None:
        """2 per 10 s: two start now; none more until the window has passed, even when
        the first two have finished; then two more."""
        await enqueue(store, *(f"w-{n}" for n in range(6)))
        queue = QueueLimits(name="mail", rate_limit=2, rate_period=10 * SECOND)
        started = await claim_queue(store, queue)
        assert len(started) == 2
        for record in started:
            await store.set_workflow_status(
                fence_of(record), WorkflowStatus.COMPLETED, now=NOW, result="1"
            )
        assert await claim_queue(store, queue, now=NOW + 10 * SECOND - 1) == []
        assert len(await claim_queue(store, queue, now=NOW + 10 * SECOND)) == 2

    async def test_first_claim_sets_started_at_and_later_claims_keep_it(self, store: Store) -> None:
        """started_at is the first claim's time: a recovery is not a new start."""
        await enqueue(store, "w-1")
        queue = QueueLimits(name="mail")
        (record,) = await claim_queue(store, queue)
        assert record.started_at == NOW
        later = NOW + 2 * LEASE
        (again,) = await claim_queue(store, queue, "exec-b", now=later)
        assert (again.owner, again.started_at) == ("exec-b", NOW)

    async def test_concurrent_claims_never_exceed_the_limit(self, store: Store) -> None:
        """Ten workers claiming at once take exactly the concurrency limit in total."""
        await enqueue(store, *(f"w-{n:02}" for n in range(30)))
        queue = QueueLimits(name="mail", concurrency=3)
        claims = await asyncio.gather(*(claim_queue(store, queue, f"exec-{n}") for n in range(10)))
        claimed = [record.workflow_id for records in claims for record in records]
        assert len(claimed) == len(set(claimed)) == 3

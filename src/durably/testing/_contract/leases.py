"""Contract: timers, lease renewal and release, and the executor registry."""

from __future__ import annotations

from durably.models import WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    LEASE,
    NOW,
    claimed,
    owned,
    stored,
    workflow,
)


class LeasesContract:
    """next_wake_time, renew_leases, release_workflows and executors."""

    # -- next_wake_time --------------------------------------------------------------

    async def test_next_wake_time_is_the_earliest_timer_of_the_names(self, store: Store) -> None:
        """The earliest wake_at among suspended workflows of the given names."""
        suspended = WorkflowStatus.SUSPENDED
        await store.create_workflow(workflow("a", status=suspended, wake_at=NOW + 5))
        await store.create_workflow(workflow("b", status=suspended, wake_at=NOW - 3))
        await store.create_workflow(
            workflow("c", workflow_name="x", status=suspended, wake_at=NOW - 9)
        )
        assert await store.next_wake_time(names=["checkout"]) == NOW - 3
        assert await store.next_wake_time(names=["checkout", "x"]) == NOW - 9

    async def test_next_wake_time_ignores_workflows_that_are_not_suspended(
        self, store: Store
    ) -> None:
        """A wake_at on a workflow in another status is no timer."""
        await store.create_workflow(workflow("p", wake_at=NOW - 9))
        await store.create_workflow(workflow("s", status=WorkflowStatus.SUSPENDED, wake_at=None))
        assert await store.next_wake_time(names=["checkout"]) is None

    async def test_next_wake_time_without_timers_is_none(self, store: Store) -> None:
        """No suspended workflow of those names: None."""
        await store.create_workflow(workflow(status=WorkflowStatus.SUSPENDED, wake_at=NOW))
        assert await store.next_wake_time(names=["other"]) is None
        assert await store.next_wake_time(names=[]) is None

    # -- renew_leases ----------------------------------------------------------------

    async def test_renew_extends_every_lease_of_the_owner(self, store: Store) -> None:
        """All leases of the owner move to the new lease_until, expired ones too."""
        await store.create_workflow(owned("live", owner="exec-a"))
        await store.create_workflow(
            owned(
                "expired", owner="exec-a", status=WorkflowStatus.COMPENSATING, lease_until=NOW - 1
            )
        )
        await store.renew_leases(owner="exec-a", now=NOW, lease_until=NOW + 99)
        assert (await stored(store, "live")).lease_until == NOW + 99
        assert (await stored(store, "expired")).lease_until == NOW + 99

    async def test_renew_leaves_other_owners_alone(self, store: Store) -> None:
        """Leases of other executors and unowned workflows keep their values."""
        other = owned("other", owner="exec-b")
        unowned = workflow("unowned")
        await store.create_workflow(other)
        await store.create_workflow(unowned)
        await store.renew_leases(owner="exec-a", now=NOW, lease_until=NOW + 99)
        assert await stored(store, "other") == other
        assert await stored(store, "unowned") == unowned

    async def test_renew_reports_the_owners_cancellation_requests(self, store: Store) -> None:
        """The ids of the owner's workflows whose cancellation was requested."""
        await claimed(store, "w-1")
        await claimed(store, "w-2")
        await claimed(store, "w-3", owner="exec-b")
        await store.request_cancel("w-2", compensate=False, now=NOW)
        await store.request_cancel("w-3", compensate=False, now=NOW)
        cancelled = await store.renew_leases(owner="exec-a", now=NOW, lease_until=NOW + 99)
        assert cancelled == ["w-2"]

    async def test_renew_without_cancellations_reports_none(self, store: Store) -> None:
        """An owner with nothing cancelled gets an empty list."""
        await claimed(store)
        assert await store.renew_leases(owner="exec-a", now=NOW, lease_until=NOW + 9) == []

    async def test_renew_records_the_executors_heartbeat(self, store: Store) -> None:
        """The registered executor's heartbeat_at becomes ``now``."""
        await store.register_executor(executor_id="exec-a", hostname="h", pid=7, now=NOW)
        await store.renew_leases(owner="exec-a", now=NOW + 5, lease_until=NOW + 99)
        assert await store.list_executors() == [("exec-a", "h", 7, NOW + 5)]

    async def test_renew_by_an_unregistered_executor_registers_nothing(self, store: Store) -> None:
        """Renewing leases never invents an executor row."""
        await store.renew_leases(owner="ghost", now=NOW, lease_until=NOW + 1)
        assert await store.list_executors() == []

    # -- release_workflows -----------------------------------------------------------

    async def test_release_frees_the_owners_workflows_at_once(self, store: Store) -> None:
        """Released workflows have no owner or lease and can be claimed immediately."""
        await claimed(store, "w-1")
        await claimed(store, "w-2")
        assert await store.release_workflows(owner="exec-a") == 2
        record = await stored(store, "w-1")
        assert (record.owner, record.lease_until, record.status) == (
            None,
            None,
            WorkflowStatus.RUNNING,
        )
        again = await store.claim_workflow("w-2", owner="b", now=NOW, lease_until=NOW + LEASE)
        assert again is not None and again.recovery_attempts == 1

    async def test_a_clean_release_gives_back_the_recovery_attempt_of_its_claim(
        self, store: Store
    ) -> None:
        """A run given up by a clean stop is not a crash: however often a workflow is
        released and claimed again, its recovery attempts do not grow (restarts never
        park it); they never go below zero."""
        await store.create_workflow(owned(recovery_attempts=3))
        for owner in ("exec-b", "exec-c", "exec-d"):
            assert await store.release_workflows(owner=(await stored(store)).owner or "") == 1
            assert (await stored(store)).recovery_attempts == 2
            again = await store.claim_workflow("w-1", owner=owner, now=NOW, lease_until=NOW + 1)
            assert again is not None and again.recovery_attempts == 3
        await store.create_workflow(owned("fresh", owner="exec-e"))
        await store.release_workflows(owner="exec-e")
        assert (await stored(store, "fresh")).recovery_attempts == 0

    async def test_release_leaves_other_owners_alone(self, store: Store) -> None:
        """Only the named owner's leases are given up."""
        await claimed(store, "w-1", owner="exec-b")
        assert await store.release_workflows(owner="exec-a") == 0
        assert (await stored(store)).owner == "exec-b"

    # -- executors -------------------------------------------------------------------

    async def test_register_executor_inserts_then_replaces(self, store: Store) -> None:
        """Registering again updates the hostname, pid and heartbeat."""
        await store.register_executor(executor_id="a", hostname="h1", pid=1, now=NOW)
        await store.register_executor(executor_id="a", hostname="h2", pid=2, now=NOW + 1)
        assert await store.list_executors() == [("a", "h2", 2, NOW + 1)]

    async def test_executors_are_listed_by_id(self, store: Store) -> None:
        """list_executors returns every executor as (id, hostname, pid, heartbeat_at)."""
        await store.register_executor(executor_id="b", hostname="h", pid=2, now=NOW)
        await store.register_executor(executor_id="a", hostname="h", pid=1, now=NOW + 1)
        assert await store.list_executors() == [("a", "h", 1, NOW + 1), ("b", "h", 2, NOW)]

    async def test_removing_an_executor_keeps_its_leases_by_default(self, store: Store) -> None:
        """Without expire_leases its workflows stay owned until their leases end."""
        await store.register_executor(executor_id="exec-a", hostname="h", pid=1, now=NOW)
        await claimed(store)
        assert await store.remove_executor(executor_id="exec-a", expire_leases=False) == 0
        assert await store.list_executors() == []
        assert (await stored(store)).owner == "exec-a"

    async def test_removing_a_dead_executor_frees_its_workflows(self, store: Store) -> None:
        """With expire_leases its workflows are claimable at once; the count is returned."""
        await store.register_executor(executor_id="exec-a", hostname="h", pid=1, now=NOW)
        await claimed(store, "w-1")
        await claimed(store, "w-2")
        await claimed(store, "w-3", owner="exec-b")
        assert await store.remove_executor(executor_id="exec-a", expire_leases=True) == 2
        assert await store.claim_workflow("w-1", owner="c", now=NOW, lease_until=NOW + 1)
        assert (await stored(store, "w-3")).owner == "exec-b"

    async def test_removing_a_dead_executor_keeps_the_recovery_attempts(self, store: Store) -> None:
        """Its runs crashed: the claim that takes one over counts one more attempt."""
        await store.register_executor(executor_id="exec-a", hostname="h", pid=1, now=NOW)
        await store.create_workflow(owned(recovery_attempts=3))
        assert await store.remove_executor(executor_id="exec-a", expire_leases=True) == 1
        assert (await stored(store)).recovery_attempts == 3
        again = await store.claim_workflow("w-1", owner="b", now=NOW, lease_until=NOW + 1)
        assert again is not None and again.recovery_attempts == 4

    async def test_removing_an_unknown_executor_is_harmless(self, store: Store) -> None:
        """Nothing to forget, nothing expired."""
        assert await store.remove_executor(executor_id="ghost", expire_leases=True) == 0

"""The store contract: the tests that define a correct store.

Subclass :class:`StoreContract` in your test suite and provide a ``store`` fixture
that yields an opened store on an empty database::

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self):
            store = MyStore(...)
            await store.open()
            yield store
            await store.close()

Every method of :class:`durably.store.Store` and every rule in its docstrings has a
test here (pytest with ``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from durably.errors import LeaseLostError, WorkflowFinishedError, WorkflowNotFoundError
from durably.models import (
    AttemptRecord,
    Fence,
    OperationKind,
    OperationRecord,
    OperationStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.store.base import Store

NOW = 1_800_000_000_000_000
SECOND = 1_000_000


def workflow(workflow_id: str = "w-1", **fields: Any) -> WorkflowRecord:
    """A pending, unowned workflow record created at NOW (override any field)."""
    values: dict[str, object] = {
        "workflow_id": workflow_id,
        "workflow_name": "checkout",
        "status": WorkflowStatus.PENDING,
        "version": "v1",
        "input": '{"n":1}',
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return WorkflowRecord(**values)  # type: ignore[arg-type]


def operation(workflow_id: str = "w-1", seq: int = 0, **fields: Any) -> OperationRecord:
    """A completed step record (override any field)."""
    values: dict[str, object] = {
        "workflow_id": workflow_id,
        "seq": seq,
        "kind": OperationKind.STEP,
        "name": f"step-{seq}",
        "status": OperationStatus.COMPLETED,
        "result": "42",
        "started_at": NOW,
        "finished_at": NOW + 10,
    }
    values.update(fields)
    return OperationRecord(**values)  # type: ignore[arg-type]


def ids(records: list[WorkflowRecord]) -> list[str]:
    """The ids of records, in order."""
    return [record.workflow_id for record in records]


async def claimed(store: Store, workflow_id: str = "w-1", owner: str = "exec-a") -> Fence:
    """Create a workflow, claim it and return the owner's fence."""
    await store.create_workflow(workflow(workflow_id))
    record = await store.claim_workflow(
        workflow_id, owner=owner, now=NOW, lease_until=NOW + 30 * SECOND
    )
    assert record is not None
    return Fence(workflow_id=workflow_id, owner=owner, fence=record.fence)


class StoreContract:
    """Behaviour every store must have. Provide a ``store`` fixture in a subclass."""

    # -- workflows -----------------------------------------------------------------

    async def test_create_stores_the_record_as_given(self, store: Store) -> None:
        """A new workflow is stored field for field and reported as created."""
        record = workflow(
            owner="exec-a", fence=1, lease_until=NOW + 5, status=WorkflowStatus.RUNNING
        )
        stored, created = await store.create_workflow(record)
        assert created
        assert stored == record
        assert await store.get_workflow("w-1") == record

    async def test_create_with_a_taken_id_returns_the_existing_workflow(self, store: Store) -> None:
        """Creating an existing id changes nothing and returns the stored row."""
        await store.create_workflow(workflow(input='{"n":1}'))
        stored, created = await store.create_workflow(workflow(input='{"n":2}'))
        assert not created
        assert stored.input == '{"n":1}'

    async def test_unknown_workflow_is_none(self, store: Store) -> None:
        """get_workflow of an unknown id is None."""
        assert await store.get_workflow("missing") is None

    async def test_identifiers_with_quotes_semicolons_and_percent_round_trip(
        self, store: Store
    ) -> None:
        """Ids and names are data, never SQL."""
        tricky = "o'rder; DROP TABLE workflows; -- 100%"
        await store.create_workflow(workflow(tricky, workflow_name=tricky))
        record = await store.get_workflow(tricky)
        assert record is not None
        assert record.workflow_name == tricky
        assert [r.workflow_id for r in await store.list_workflows(names=[tricky])] == [tricky]

    async def test_list_filters_by_status_name_and_creation_time(self, store: Store) -> None:
        """Every filter narrows the list; None means no filter, empty means nothing."""
        await store.create_workflow(workflow("a", created_at=NOW))
        await store.create_workflow(
            workflow("b", workflow_name="refund", created_at=NOW + 1, status=WorkflowStatus.FAILED)
        )
        await store.create_workflow(workflow("c", created_at=NOW + 2))
        assert ids(await store.list_workflows()) == ["a", "b", "c"]
        assert ids(await store.list_workflows(statuses=[WorkflowStatus.FAILED])) == ["b"]
        assert ids(await store.list_workflows(names=["checkout"])) == ["a", "c"]
        assert ids(await store.list_workflows(created_after=NOW)) == ["b", "c"]
        assert ids(await store.list_workflows(created_before=NOW + 2)) == ["a", "b"]
        assert await store.list_workflows(statuses=[]) == []
        assert ids(await store.list_workflows(limit=1, offset=1)) == ["b"]
        assert ids(await store.list_workflows(newest_first=True)) == ["c", "b", "a"]

    async def test_count_by_status(self, store: Store) -> None:
        """count_workflows groups by status."""
        await store.create_workflow(workflow("a"))
        await store.create_workflow(workflow("b"))
        await store.create_workflow(workflow("c", status=WorkflowStatus.COMPLETED))
        assert await store.count_workflows() == {
            WorkflowStatus.PENDING: 2,
            WorkflowStatus.COMPLETED: 1,
        }

    async def test_delete_removes_the_workflow_and_its_rows(self, store: Store) -> None:
        """delete_workflow removes operations, attempts and signals too."""
        fence = await claimed(store)
        await store.record_operation(fence, operation())
        await store.append_signal("w-1", "s", "1", serializer="json", dedup_key=None, now=NOW)
        await store.create_workflow(workflow("other"))
        assert await store.delete_workflow("w-1")
        assert not await store.delete_workflow("w-1")
        assert await store.get_workflow("w-1") is None
        assert (await store.load_history("w-1")).operations == {}
        assert await store.list_signals("w-1") == []
        assert await store.get_workflow("other") is not None

    async def test_purge_deletes_only_old_finished_workflows_of_the_statuses(
        self, store: Store
    ) -> None:
        """purge_workflows counts and deletes by finished_at and status."""
        for workflow_id, status, finished in [
            ("old-done", WorkflowStatus.COMPLETED, NOW),
            ("old-failed", WorkflowStatus.FAILED, NOW),
            ("new-done", WorkflowStatus.COMPLETED, NOW + 100),
            ("running", WorkflowStatus.RUNNING, None),
        ]:
            await store.create_workflow(workflow(workflow_id, status=status, finished_at=finished))
        purged = await store.purge_workflows(
            finished_before=NOW + 50, statuses=[WorkflowStatus.COMPLETED]
        )
        assert purged == 1
        remaining = {r.workflow_id for r in await store.list_workflows()}
        assert remaining == {"old-failed", "new-done", "running"}

    # -- ownership -----------------------------------------------------------------

    async def test_claim_sets_owner_fence_lease_and_running(self, store: Store) -> None:
        """Claiming a pending workflow makes it RUNNING and owned, fence incremented."""
        await store.create_workflow(workflow(wake_at=NOW))
        record = await store.claim_workflow("w-1", owner="a", now=NOW, lease_until=NOW + 9)
        assert record is not None
        assert (record.owner, record.fence, record.lease_until) == ("a", 1, NOW + 9)
        assert record.status is WorkflowStatus.RUNNING
        assert record.wake_at is None
        assert record.recovery_attempts == 0

    @pytest.mark.parametrize(
        "fields",
        [
            {"status": WorkflowStatus.RUNNING, "owner": "dead", "lease_until": NOW - 1},
            {"status": WorkflowStatus.RUNNING, "owner": None},
            {"status": WorkflowStatus.COMPENSATING, "owner": "dead", "lease_until": NOW - 1},
            {"status": WorkflowStatus.SUSPENDED, "wake_at": NOW},
            {"status": WorkflowStatus.PENDING, "owner": "dead", "lease_until": NOW - 1},
        ],
    )
    async def test_claimable_cases(self, store: Store, fields: dict[str, Any]) -> None:
        """Expired leases, unowned live workflows and due timers are claimable."""
        await store.create_workflow(workflow(**fields))
        assert await store.claim_workflow("w-1", owner="a", now=NOW, lease_until=NOW + 9)

    @pytest.mark.parametrize(
        "fields",
        [
            {"status": WorkflowStatus.RUNNING, "owner": "alive", "lease_until": NOW + 1},
            {"status": WorkflowStatus.SUSPENDED, "wake_at": NOW + 1},
            {"status": WorkflowStatus.SUSPENDED, "wake_at": None},
            {"status": WorkflowStatus.PARKED},
            {"status": WorkflowStatus.COMPLETED},
            {"status": WorkflowStatus.CANCELLED},
        ],
    )
    async def test_non_claimable_cases(self, store: Store, fields: dict[str, Any]) -> None:
        """Live leases, future or absent timers, parked and terminal workflows are not."""
        await store.create_workflow(workflow(**fields))
        assert await store.claim_workflow("w-1", owner="a", now=NOW, lease_until=NOW + 9) is None
        assert await store.claim_workflow("missing", owner="a", now=NOW, lease_until=NOW) is None

    async def test_reclaiming_a_crashed_run_counts_a_recovery_attempt(self, store: Store) -> None:
        """A RUNNING or COMPENSATING workflow claimed again counts one more recovery."""
        await store.create_workflow(
            workflow(status=WorkflowStatus.COMPENSATING, owner="x", lease_until=NOW - 1, fence=3)
        )
        record = await store.claim_workflow("w-1", owner="a", now=NOW, lease_until=NOW + 9)
        assert record is not None
        assert record.recovery_attempts == 1
        assert record.fence == 4
        assert record.status is WorkflowStatus.COMPENSATING

    async def test_claim_due_respects_names_limit_and_due_order(self, store: Store) -> None:
        """claim_due_workflows takes the earliest due workflows of the given names."""
        await store.create_workflow(workflow("late", created_at=NOW + 5))
        await store.create_workflow(workflow("early", created_at=NOW))
        await store.create_workflow(
            workflow("timer", status=WorkflowStatus.SUSPENDED, wake_at=NOW - 10, created_at=NOW + 9)
        )
        await store.create_workflow(workflow("other-name", workflow_name="refund"))
        first = await store.claim_due_workflows(
            owner="a", names=["checkout"], now=NOW, lease_until=NOW + 9, limit=2
        )
        assert sorted(r.workflow_id for r in first) == ["early", "timer"]
        rest = await store.claim_due_workflows(
            owner="a", names=["checkout"], now=NOW, lease_until=NOW + 9, limit=10
        )
        assert [r.workflow_id for r in rest] == ["late"]

    async def test_concurrent_claims_never_take_the_same_workflow(self, store: Store) -> None:
        """Claims racing for the same work split it without overlap."""
        for index in range(40):
            await store.create_workflow(workflow(f"w-{index:02}"))
        batches = await asyncio.gather(
            *(
                store.claim_due_workflows(
                    owner=f"exec-{n}", names=["checkout"], now=NOW, lease_until=NOW + 9, limit=7
                )
                for n in range(8)
            )
        )
        claimed_ids = [r.workflow_id for batch in batches for r in batch]
        assert len(claimed_ids) == len(set(claimed_ids)) == 40

    async def test_next_wake_time_is_the_earliest_timer(self, store: Store) -> None:
        """next_wake_time looks at suspended workflows of the given names only."""
        assert await store.next_wake_time(names=["checkout"]) is None
        await store.create_workflow(workflow("a", status=WorkflowStatus.SUSPENDED, wake_at=NOW + 5))
        await store.create_workflow(workflow("b", status=WorkflowStatus.SUSPENDED, wake_at=NOW + 3))
        await store.create_workflow(
            workflow("c", workflow_name="x", status=WorkflowStatus.SUSPENDED, wake_at=NOW)
        )
        assert await store.next_wake_time(names=["checkout"]) == NOW + 3

    async def test_renew_extends_leases_and_reports_cancellations(self, store: Store) -> None:
        """renew_leases extends every lease of the owner and lists cancel requests."""
        fence = await claimed(store, "w-1")
        await claimed(store, "w-2")
        await claimed(store, "w-3", owner="someone-else")
        await store.request_cancel("w-2", compensate=False, now=NOW)
        cancelled = await store.renew_leases(owner=fence.owner, now=NOW, lease_until=NOW + 99)
        assert cancelled == ["w-2"]
        first = await store.get_workflow("w-1")
        other = await store.get_workflow("w-3")
        assert first is not None and first.lease_until == NOW + 99
        assert other is not None and other.lease_until != NOW + 99

    async def test_release_makes_workflows_claimable_at_once(self, store: Store) -> None:
        """release_workflows gives up leases; anyone can claim them immediately."""
        fence = await claimed(store)
        assert await store.release_workflows(owner=fence.owner) == 1
        record = await store.claim_workflow("w-1", owner="b", now=NOW, lease_until=NOW + 9)
        assert record is not None and record.owner == "b"

    async def test_executors_register_list_and_remove(self, store: Store) -> None:
        """Executors are upserted, listed, and removed with or without their leases."""
        await store.register_executor(executor_id="a", hostname="h", pid=1, now=NOW)
        await store.register_executor(executor_id="a", hostname="h", pid=2, now=NOW + 1)
        assert await store.list_executors() == [("a", "h", 2, NOW + 1)]
        await claimed(store, owner="a")
        assert await store.remove_executor(executor_id="a", expire_leases=True) == 1
        assert await store.list_executors() == []
        assert await store.claim_workflow("w-1", owner="b", now=NOW, lease_until=NOW + 9)

    # -- history -------------------------------------------------------------------

    async def test_history_round_trips_every_field(self, store: Store) -> None:
        """Operations and attempts come back exactly as recorded."""
        fence = await claimed(store)
        recorded = operation(
            seq=3,
            kind=OperationKind.SIGNAL,
            status=OperationStatus.WAITING,
            result=None,
            error='{"type":"X"}',
            serializer="json",
            attempts=2,
            finished_at=None,
            wake_at=NOW + 7,
        )
        attempt = AttemptRecord(
            workflow_id="w-1",
            seq=3,
            attempt=1,
            error='{"type":"E"}',
            started_at=NOW,
            finished_at=NOW + 1,
            next_attempt_at=NOW + 2,
        )
        compensation = operation(seq=-1, kind=OperationKind.COMPENSATION, name="a:compensate")
        await store.record_operation(fence, recorded)
        await store.record_operation(fence, compensation)
        await store.record_attempt(fence, attempt)
        history = await store.load_history("w-1")
        assert history.operations == {3: recorded, -1: compensation}
        assert history.attempts == {3: [attempt]}

    async def test_recording_again_replaces_the_operation(self, store: Store) -> None:
        """record_operation is an upsert on (workflow_id, seq)."""
        fence = await claimed(store)
        await store.record_operation(fence, operation(status=OperationStatus.WAITING, result=None))
        await store.record_operation(fence, operation(result='"done"'))
        assert (await store.load_history("w-1")).operations[0].result == '"done"'

    async def test_recording_refreshes_updated_at(self, store: Store) -> None:
        """A recorded operation moves the workflow's updated_at forward."""
        fence = await claimed(store)
        await store.record_operation(fence, operation(finished_at=NOW + 500))
        record = await store.get_workflow("w-1")
        assert record is not None and record.updated_at == NOW + 500

    async def test_stale_fence_writes_nothing(self, store: Store) -> None:
        """After another executor claimed the workflow, the old owner cannot write."""
        stale = await claimed(store)
        await store.release_workflows(owner=stale.owner)
        await store.claim_workflow("w-1", owner="new", now=NOW, lease_until=NOW + 9)
        with pytest.raises(LeaseLostError):
            await store.record_operation(stale, operation())
        with pytest.raises(LeaseLostError):
            await store.record_attempt(
                stale,
                AttemptRecord(
                    workflow_id="w-1", seq=0, attempt=1, error="{}", started_at=0, finished_at=0
                ),
            )
        with pytest.raises(LeaseLostError):
            await store.set_workflow_status(stale, WorkflowStatus.COMPLETED, now=NOW)
        with pytest.raises(LeaseLostError):
            await store.suspend_workflow(stale, now=NOW, wake_at=None, wait_reason="x")
        with pytest.raises(LeaseLostError):
            await store.consume_signal(stale, operation(kind=OperationKind.SIGNAL, name="s"))
        history = await store.load_history("w-1")
        assert history.operations == {} and history.attempts == {}
        record = await store.get_workflow("w-1")
        assert record is not None and record.status is WorkflowStatus.RUNNING

    # -- status --------------------------------------------------------------------

    async def test_terminal_status_releases_and_stamps_finished_at(self, store: Store) -> None:
        """Completing stores the result, releases ownership and sets finished_at."""
        fence = await claimed(store)
        record = await store.set_workflow_status(
            fence, WorkflowStatus.COMPLETED, now=NOW + 3, result='"ok"'
        )
        assert record.status is WorkflowStatus.COMPLETED
        assert (record.owner, record.lease_until, record.finished_at) == (None, None, NOW + 3)
        assert record.result == '"ok"'

    async def test_parking_releases_without_finishing(self, store: Store) -> None:
        """PARKED releases ownership but is not finished."""
        fence = await claimed(store)
        record = await store.set_workflow_status(fence, WorkflowStatus.PARKED, now=NOW, error="{}")
        assert record.owner is None and record.finished_at is None and record.error == "{}"

    async def test_compensating_keeps_ownership(self, store: Store) -> None:
        """COMPENSATING is a live status: the owner keeps its lease."""
        fence = await claimed(store)
        record = await store.set_workflow_status(fence, WorkflowStatus.COMPENSATING, now=NOW)
        assert record.owner == fence.owner

    async def test_disallowed_transition_is_refused(self, store: Store) -> None:
        """RUNNING cannot jump to COMPENSATED (it must go through COMPENSATING)."""
        fence = await claimed(store)
        with pytest.raises(LeaseLostError):
            await store.set_workflow_status(fence, WorkflowStatus.COMPENSATED, now=NOW)
        record = await store.get_workflow("w-1")
        assert record is not None and record.status is WorkflowStatus.RUNNING

    async def test_suspend_releases_and_records_the_wake_up(self, store: Store) -> None:
        """Suspending stores the timer and the reason and frees the workflow."""
        fence = await claimed(store)
        record = await store.suspend_workflow(
            fence, now=NOW, wake_at=NOW + 60, wait_reason="sleep 'nap'"
        )
        assert record.status is WorkflowStatus.SUSPENDED
        assert (record.owner, record.wake_at, record.wait_reason) == (None, NOW + 60, "sleep 'nap'")

    async def test_suspend_with_a_waiting_signal_wakes_at_once(self, store: Store) -> None:
        """A signal already in the inbox makes the suspension due now (no lost wake-up)."""
        fence = await claimed(store)
        await store.append_signal("w-1", "go", "1", serializer="json", dedup_key=None, now=NOW)
        record = await store.suspend_workflow(
            fence, now=NOW + 1, wake_at=None, wait_reason="signal", waiting_for_signal="go"
        )
        assert record.wake_at == NOW + 1

    async def test_cancel_of_an_unowned_pending_workflow_is_immediate(self, store: Store) -> None:
        """Nobody runs it: it becomes CANCELLED."""
        await store.create_workflow(workflow())
        record = await store.request_cancel("w-1", compensate=False, now=NOW)
        assert record.status is WorkflowStatus.CANCELLED
        assert record.finished_at == NOW
        again = await store.request_cancel("w-1", compensate=False, now=NOW + 1)
        assert again.status is WorkflowStatus.CANCELLED

    async def test_cancel_with_compensation_makes_a_suspended_workflow_due(
        self, store: Store
    ) -> None:
        """With compensate, a suspended workflow is woken to run its compensations."""
        await store.create_workflow(workflow(status=WorkflowStatus.SUSPENDED, wake_at=None))
        record = await store.request_cancel("w-1", compensate=True, now=NOW)
        assert record.status is WorkflowStatus.SUSPENDED
        assert record.wake_at == NOW
        assert record.cancel_requested and record.compensate_on_cancel

    async def test_cancel_of_a_running_workflow_only_sets_the_flag(self, store: Store) -> None:
        """The owner sees the request; the status is left to it."""
        await claimed(store)
        record = await store.request_cancel("w-1", compensate=False, now=NOW)
        assert record.status is WorkflowStatus.RUNNING
        assert record.cancel_requested

    async def test_cancel_errors(self, store: Store) -> None:
        """Unknown ids and finished workflows are refused."""
        with pytest.raises(WorkflowNotFoundError):
            await store.request_cancel("missing", compensate=False, now=NOW)
        await store.create_workflow(workflow(status=WorkflowStatus.COMPLETED))
        with pytest.raises(WorkflowFinishedError):
            await store.request_cancel("w-1", compensate=False, now=NOW)

    # -- signals -------------------------------------------------------------------

    async def test_signals_are_consumed_fifo_per_name(self, store: Store) -> None:
        """The oldest unconsumed signal of the name is consumed, once."""
        fence = await claimed(store)
        for name, payload in [("a", "1"), ("b", "x"), ("a", "2")]:
            await store.append_signal(
                "w-1", name, payload, serializer="json", dedup_key=None, now=NOW
            )
        template = operation(kind=OperationKind.SIGNAL, name="a", result=None)
        first = await store.consume_signal(fence, template)
        second = await store.consume_signal(fence, dataclasses.replace(template, seq=1))
        third = await store.consume_signal(fence, dataclasses.replace(template, seq=2))
        assert (first and first.payload, second and second.payload, third) == ("1", "2", None)
        history = await store.load_history("w-1")
        assert history.operations[0].result == "1"
        assert history.operations[1].result == "2"
        assert 2 not in history.operations
        inbox = await store.list_signals("w-1")
        assert [s.consumed_seq for s in inbox] == [0, None, 1]

    async def test_dedup_key_makes_sends_idempotent(self, store: Store) -> None:
        """A second send with the same dedup key returns the first, not appended."""
        await store.create_workflow(workflow())
        first, appended = await store.append_signal(
            "w-1", "pay", "1", serializer="json", dedup_key="k", now=NOW
        )
        again, appended_again = await store.append_signal(
            "w-1", "pay", "2", serializer="json", dedup_key="k", now=NOW
        )
        assert appended and not appended_again
        assert again == first
        assert len(await store.list_signals("w-1")) == 1

    async def test_signal_wakes_a_suspended_workflow(self, store: Store) -> None:
        """Appending a signal makes a suspended workflow due now."""
        await store.create_workflow(workflow(status=WorkflowStatus.SUSPENDED, wake_at=None))
        await store.append_signal("w-1", "go", None, serializer="json", dedup_key=None, now=NOW)
        record = await store.get_workflow("w-1")
        assert record is not None and record.wake_at == NOW

    async def test_signal_errors(self, store: Store) -> None:
        """Signals to unknown or finished workflows are refused."""
        with pytest.raises(WorkflowNotFoundError):
            await store.append_signal(
                "missing", "s", None, serializer="json", dedup_key=None, now=NOW
            )
        await store.create_workflow(workflow(status=WorkflowStatus.FAILED))
        with pytest.raises(WorkflowFinishedError):
            await store.append_signal("w-1", "s", None, serializer="json", dedup_key=None, now=NOW)

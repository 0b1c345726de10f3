"""Contract: the signal inbox (append, consume, list)."""

from __future__ import annotations

import dataclasses

import pytest

from durably.errors import LeaseLostError, WorkflowFinishedError, WorkflowNotFoundError
from durably.models import TERMINAL_STATUSES, OperationStatus, WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    NOW,
    claimed,
    owned,
    send,
    signal_wait,
    stored,
    workflow,
)


class SignalsContract:
    """append_signal, consume_signal and list_signals."""

    # -- append_signal ---------------------------------------------------------------

    async def test_an_appended_signal_is_stored_as_sent(self, store: Store) -> None:
        """The returned record holds every field given, unconsumed, and equals the inbox."""
        await store.create_workflow(workflow())
        signal, appended = await store.append_signal(
            "w-1", "go", '{"ok": true}', serializer="custom", dedup_key="k-1", now=NOW + 4
        )
        assert appended
        assert (signal.workflow_id, signal.name, signal.payload, signal.serializer) == (
            "w-1",
            "go",
            '{"ok": true}',
            "custom",
        )
        assert (signal.dedup_key, signal.created_at, signal.consumed_seq, signal.consumed_at) == (
            "k-1",
            NOW + 4,
            None,
            None,
        )
        assert await store.list_signals("w-1") == [signal]

    async def test_a_signal_may_have_no_payload(self, store: Store) -> None:
        """payload None round-trips."""
        await store.create_workflow(workflow())
        signal, _ = await send(store, payload=None)
        assert signal.payload is None
        assert (await store.list_signals("w-1"))[0].payload is None

    async def test_signals_get_increasing_ids_in_sending_order(self, store: Store) -> None:
        """The inbox is FIFO: later signals have larger ids and are listed later."""
        await store.create_workflow(workflow())
        sent = [(await send(store, name=name))[0] for name in ("b", "a", "b")]
        assert sent[0].signal_id < sent[1].signal_id < sent[2].signal_id
        assert await store.list_signals("w-1") == sent

    async def test_a_repeated_dedup_key_returns_the_first_signal(self, store: Store) -> None:
        """The second send with the same key is not appended: (existing, False)."""
        await store.create_workflow(workflow())
        first, _ = await send(store, payload='"1"', dedup_key="k")
        again, appended = await send(store, payload='"2"', dedup_key="k", now=NOW + 1)
        assert (again, appended) == (first, False)
        assert await store.list_signals("w-1") == [first]

    async def test_dedup_keys_are_per_workflow(self, store: Store) -> None:
        """The same key sent to two workflows appends to both."""
        await store.create_workflow(workflow("w-1"))
        await store.create_workflow(workflow("w-2"))
        assert (await send(store, "w-1", dedup_key="k"))[1]
        assert (await send(store, "w-2", dedup_key="k"))[1]

    async def test_a_dedup_retry_after_the_workflow_finished_is_not_an_error(
        self, store: Store
    ) -> None:
        """Retrying a send that succeeded returns the original signal, even once finished."""
        await store.create_workflow(workflow())
        first, _ = await send(store, dedup_key="k")
        await store.request_cancel("w-1", compensate=False, now=NOW)
        assert await send(store, dedup_key="k") == (first, False)

    async def test_a_signal_to_an_unknown_workflow_is_refused(self, store: Store) -> None:
        """WorkflowNotFoundError."""
        with pytest.raises(WorkflowNotFoundError):
            await send(store, "missing")

    @pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
    async def test_a_signal_to_a_finished_workflow_is_refused(
        self, store: Store, status: WorkflowStatus
    ) -> None:
        """WorkflowFinishedError, and nothing is appended."""
        await store.create_workflow(workflow(status=status, finished_at=NOW))
        with pytest.raises(WorkflowFinishedError):
            await send(store)
        assert await store.list_signals("w-1") == []

    @pytest.mark.parametrize("wake_at", [None, NOW + 100], ids=["no-timer", "later-timer"])
    async def test_a_signal_wakes_a_suspended_workflow_now(
        self, store: Store, wake_at: int | None
    ) -> None:
        """A SUSPENDED workflow's wake_at becomes now, so it is claimable at once."""
        await store.create_workflow(workflow(status=WorkflowStatus.SUSPENDED, wake_at=wake_at))
        await send(store, now=NOW + 1)
        assert (await stored(store)).wake_at == NOW + 1
        assert await store.claim_workflow("w-1", owner="b", now=NOW + 1, lease_until=NOW + 2)

    async def test_a_signal_never_delays_a_due_timer(self, store: Store) -> None:
        """A wake_at already earlier than now stays (waking never postpones)."""
        await store.create_workflow(workflow(status=WorkflowStatus.SUSPENDED, wake_at=NOW - 5))
        await send(store, now=NOW)
        assert (await stored(store)).wake_at == NOW - 5

    async def test_a_signal_leaves_a_running_workflow_as_it_is(self, store: Store) -> None:
        """Only SUSPENDED workflows are woken; the owner of a running one finds the inbox."""
        record = owned()
        await store.create_workflow(record)
        await send(store)
        assert await stored(store) == record

    # -- consume_signal --------------------------------------------------------------

    async def test_consuming_takes_the_oldest_signal_of_the_name(self, store: Store) -> None:
        """FIFO per name: other names are skipped and left unconsumed."""
        fence = await claimed(store)
        first, _ = await send(store, name="go", payload='"1"')
        other, _ = await send(store, name="stop", payload='"x"')
        await send(store, name="go", payload='"2"')
        consumed = await store.consume_signal(fence, signal_wait(seq=4, name="go"))
        assert consumed == dataclasses.replace(first, consumed_seq=4, consumed_at=NOW + 20)
        inbox = await store.list_signals("w-1")
        assert [s.consumed_seq for s in inbox] == [4, None, None]
        assert inbox[1] == other

    async def test_consuming_records_the_operation_with_the_payload(self, store: Store) -> None:
        """The operation is stored COMPLETED with the signal's payload and serializer."""
        fence = await claimed(store)
        await store.append_signal(
            "w-1", "go", '{"v": 1}', serializer="custom", dedup_key=None, now=NOW
        )
        wait = signal_wait(seq=2, name="go")
        await store.consume_signal(fence, wait)
        recorded = (await store.load_history("w-1")).operations[2]
        assert recorded == dataclasses.replace(
            wait, status=OperationStatus.COMPLETED, result='{"v": 1}', serializer="custom"
        )

    async def test_consuming_refreshes_updated_at(self, store: Store) -> None:
        """Like record_operation, consuming moves updated_at to the operation's finish."""
        fence = await claimed(store)
        await send(store)
        await store.consume_signal(fence, signal_wait())
        assert (await stored(store)).updated_at == NOW + 20

    async def test_consuming_in_turn_follows_the_sending_order(self, store: Store) -> None:
        """Successive waits get successive signals, each consumed once."""
        fence = await claimed(store)
        for payload in ('"1"', '"2"'):
            await send(store, payload=payload)
        first = await store.consume_signal(fence, signal_wait(seq=0))
        second = await store.consume_signal(fence, signal_wait(seq=1))
        third = await store.consume_signal(fence, signal_wait(seq=2))
        assert (first and first.payload, second and second.payload, third) == ('"1"', '"2"', None)
        operations = (await store.load_history("w-1")).operations
        assert sorted(operations) == [0, 1]

    async def test_consuming_from_an_empty_inbox_writes_nothing(self, store: Store) -> None:
        """None is returned; no operation is recorded and the workflow is unchanged."""
        fence = await claimed(store)
        await send(store, name="other")
        before = await stored(store)
        assert await store.consume_signal(fence, signal_wait(name="go")) is None
        assert (await store.load_history("w-1")).operations == {}
        assert await stored(store) == before
        assert [s.consumed_seq for s in await store.list_signals("w-1")] == [None]

    async def test_consuming_with_a_stale_fence_is_refused(self, store: Store) -> None:
        """LeaseLostError; the signal stays unconsumed and nothing is recorded."""
        stale = await claimed(store, owner="exec-a")
        await send(store)
        await store.release_workflows(owner="exec-a")
        with pytest.raises(LeaseLostError):
            await store.consume_signal(stale, signal_wait())
        assert [s.consumed_seq for s in await store.list_signals("w-1")] == [None]
        assert (await store.load_history("w-1")).operations == {}

    async def test_consuming_from_an_empty_inbox_with_a_stale_fence_is_refused(
        self, store: Store
    ) -> None:
        """The fence is checked even when there is nothing to consume."""
        stale = await claimed(store, owner="exec-a")
        await store.release_workflows(owner="exec-a")
        with pytest.raises(LeaseLostError):
            await store.consume_signal(stale, signal_wait())

    # -- list_signals ----------------------------------------------------------------

    async def test_the_inbox_lists_consumed_and_waiting_signals_oldest_first(
        self, store: Store
    ) -> None:
        """list_signals shows every signal of the workflow, and only its own."""
        fence = await claimed(store, "w-1")
        await store.create_workflow(workflow("w-2"))
        first, _ = await send(store, "w-1", payload='"1"')
        await send(store, "w-2")
        second, _ = await send(store, "w-1", payload='"2"')
        consumed = await store.consume_signal(fence, signal_wait())
        assert await store.list_signals("w-1") == [consumed, second]
        assert consumed is not None and consumed.signal_id == first.signal_id

    async def test_the_inbox_of_an_unknown_workflow_is_empty(self, store: Store) -> None:
        """No workflow, no signals."""
        assert await store.list_signals("missing") == []

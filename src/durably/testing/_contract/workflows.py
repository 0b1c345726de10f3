"""Contract: opening, creating, reading, listing, counting and deleting workflows."""

from __future__ import annotations

import pytest

from durably.models import WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    NOW,
    TRICKY,
    attempt,
    claimed,
    ids,
    operation,
    send,
    stored,
    workflow,
)


class WorkflowsContract:
    """Lifecycle and the workflow table."""

    # -- lifecycle -------------------------------------------------------------------

    async def test_the_store_implements_the_protocol(self, store: Store) -> None:
        """Every method of durably.store.Store is present."""
        assert isinstance(store, Store)

    async def test_opening_an_open_store_is_harmless(self, store: Store) -> None:
        """open() is idempotent."""
        await store.create_workflow(workflow())
        await store.open()
        assert await store.get_workflow("w-1") is not None

    async def test_closing_twice_then_reopening_keeps_the_data(self, store: Store) -> None:
        """close() is idempotent, and a reopened store still has its workflows."""
        await store.create_workflow(workflow())
        await store.close()
        await store.close()
        await store.open()
        assert await store.get_workflow("w-1") == workflow()

    # -- create and get --------------------------------------------------------------

    async def test_create_stores_the_record_as_given(self, store: Store) -> None:
        """Every field of a new workflow is stored as given, and it is reported created."""
        record = workflow(
            status=WorkflowStatus.RUNNING,
            version="v7",
            input='{"order": 7}',
            result='"r"',
            error='{"type": "E", "message": "m"}',
            serializer="pickle",
            owner="exec-a",
            fence=4,
            lease_until=NOW + 5,
            wake_at=NOW + 6,
            deadline_at=NOW + 7,
            wait_reason="sleep 'nap'",
            cancel_requested=True,
            compensate_on_cancel=True,
            recovery_attempts=3,
            created_at=NOW - 9,
            updated_at=NOW - 8,
            finished_at=NOW + 8,
        )
        assert await store.create_workflow(record) == (record, True)
        assert await store.get_workflow("w-1") == record

    async def test_create_with_a_taken_id_returns_the_existing_row_unchanged(
        self, store: Store
    ) -> None:
        """Creating an existing id writes nothing and returns the stored row."""
        first = workflow(input='{"n": 1}')
        await store.create_workflow(first)
        again = workflow(input='{"n": 2}', workflow_name="other", status=WorkflowStatus.RUNNING)
        assert await store.create_workflow(again) == (first, False)
        assert await store.get_workflow("w-1") == first

    async def test_get_of_an_unknown_id_is_none(self, store: Store) -> None:
        """get_workflow returns None for an id never created."""
        assert await store.get_workflow("missing") is None

    async def test_tricky_text_round_trips_everywhere(self, store: Store) -> None:
        """Quotes, semicolons, comments and % in ids, names and payloads are data, never SQL."""
        fence = await claimed(
            store, TRICKY, owner=TRICKY, workflow_name=TRICKY, version=TRICKY, input=TRICKY
        )
        await store.record_operation(fence, operation(TRICKY, name=TRICKY, result=TRICKY))
        await send(store, TRICKY, TRICKY, TRICKY, dedup_key=TRICKY)
        record = await stored(store, TRICKY)
        assert (record.workflow_name, record.version, record.input, record.owner) == (
            TRICKY,
            TRICKY,
            TRICKY,
            TRICKY,
        )
        recorded = (await store.load_history(TRICKY)).operations[0]
        assert (recorded.name, recorded.result) == (TRICKY, TRICKY)
        [signal] = await store.list_signals(TRICKY)
        assert (signal.name, signal.payload, signal.dedup_key) == (TRICKY, TRICKY, TRICKY)
        assert ids(await store.list_workflows(names=[TRICKY])) == [TRICKY]

    async def test_name_filters_match_exactly_not_as_patterns(self, store: Store) -> None:
        """A name with % or _ matches only itself (no LIKE semantics)."""
        await store.create_workflow(workflow("a", workflow_name="100%_x"))
        await store.create_workflow(workflow("b", workflow_name="100abx"))
        assert ids(await store.list_workflows(names=["100%_x"])) == ["a"]

    # -- list and count --------------------------------------------------------------

    async def test_list_orders_by_creation_then_id(self, store: Store) -> None:
        """Workflows are listed by (created_at, workflow_id), oldest first."""
        await store.create_workflow(workflow("c", created_at=NOW))
        await store.create_workflow(workflow("b", created_at=NOW + 1))
        await store.create_workflow(workflow("a", created_at=NOW))
        assert ids(await store.list_workflows()) == ["a", "c", "b"]

    async def test_list_newest_first_reverses_the_order(self, store: Store) -> None:
        """newest_first lists by (created_at, workflow_id) descending."""
        await store.create_workflow(workflow("c", created_at=NOW))
        await store.create_workflow(workflow("b", created_at=NOW + 1))
        await store.create_workflow(workflow("a", created_at=NOW))
        assert ids(await store.list_workflows(newest_first=True)) == ["b", "c", "a"]

    async def test_list_filters_by_status(self, store: Store) -> None:
        """Only workflows in the given statuses are listed."""
        await store.create_workflow(workflow("p"))
        await store.create_workflow(workflow("c", status=WorkflowStatus.COMPLETED))
        await store.create_workflow(workflow("f", status=WorkflowStatus.FAILED))
        listed = await store.list_workflows(
            statuses=[WorkflowStatus.COMPLETED, WorkflowStatus.FAILED]
        )
        assert ids(listed) == ["c", "f"]

    async def test_list_filters_by_name(self, store: Store) -> None:
        """Only workflows with the given names are listed."""
        await store.create_workflow(workflow("a", workflow_name="checkout"))
        await store.create_workflow(workflow("b", workflow_name="refund"))
        await store.create_workflow(workflow("c", workflow_name="report"))
        assert ids(await store.list_workflows(names={"refund", "report"})) == ["b", "c"]

    async def test_list_creation_bounds_are_exclusive(self, store: Store) -> None:
        """created_after and created_before keep workflows strictly between them."""
        for offset in range(4):
            await store.create_workflow(workflow(f"w-{offset}", created_at=NOW + offset))
        listed = await store.list_workflows(created_after=NOW, created_before=NOW + 3)
        assert ids(listed) == ["w-1", "w-2"]

    async def test_list_combines_every_filter(self, store: Store) -> None:
        """A workflow is listed only when it matches all filters."""
        await store.create_workflow(workflow("hit", created_at=NOW + 1))
        await store.create_workflow(workflow("early", created_at=NOW - 1))
        await store.create_workflow(workflow("name", workflow_name="x", created_at=NOW + 1))
        await store.create_workflow(
            workflow("status", status=WorkflowStatus.FAILED, created_at=NOW + 1)
        )
        listed = await store.list_workflows(
            statuses=[WorkflowStatus.PENDING], names=["checkout"], created_after=NOW
        )
        assert ids(listed) == ["hit"]

    @pytest.mark.parametrize("empty", ["statuses", "names"])
    async def test_list_with_an_empty_filter_matches_nothing(
        self, store: Store, empty: str
    ) -> None:
        """An empty collection is a filter that nothing passes (None is no filter)."""
        await store.create_workflow(workflow())
        if empty == "statuses":
            assert await store.list_workflows(statuses=[]) == []
        else:
            assert await store.list_workflows(names=[]) == []
        assert ids(await store.list_workflows(statuses=None, names=None)) == ["w-1"]

    async def test_list_pages_with_limit_and_offset(self, store: Store) -> None:
        """limit and offset page through the ordered list."""
        for index in range(5):
            await store.create_workflow(workflow(f"w-{index}", created_at=NOW + index))
        assert ids(await store.list_workflows(limit=2, offset=1)) == ["w-1", "w-2"]
        assert ids(await store.list_workflows(limit=2, offset=4)) == ["w-4"]
        assert ids(await store.list_workflows(limit=2, offset=1, newest_first=True)) == [
            "w-3",
            "w-2",
        ]

    async def test_list_returns_full_records(self, store: Store) -> None:
        """Listed records equal the stored ones."""
        record = workflow(wait_reason="x", deadline_at=NOW + 1)
        await store.create_workflow(record)
        assert await store.list_workflows() == [record]

    async def test_count_groups_by_status_and_omits_empty_statuses(self, store: Store) -> None:
        """count_workflows maps each status that has workflows to their number."""
        await store.create_workflow(workflow("a"))
        await store.create_workflow(workflow("b"))
        await store.create_workflow(workflow("c", status=WorkflowStatus.PARKED))
        assert await store.count_workflows() == {
            WorkflowStatus.PENDING: 2,
            WorkflowStatus.PARKED: 1,
        }

    async def test_count_of_an_empty_store_is_empty(self, store: Store) -> None:
        """No workflows, no counts."""
        assert await store.count_workflows() == {}

    # -- delete and purge ------------------------------------------------------------

    async def test_delete_removes_the_workflow_and_everything_recorded_for_it(
        self, store: Store
    ) -> None:
        """Operations, attempts and signals go with the workflow."""
        fence = await claimed(store)
        await store.record_operation(fence, operation())
        await store.record_attempt(fence, attempt())
        await send(store, dedup_key="k")
        assert await store.delete_workflow("w-1") is True
        assert await store.get_workflow("w-1") is None
        history = await store.load_history("w-1")
        assert (history.operations, history.attempts) == ({}, {})
        assert await store.list_signals("w-1") == []

    async def test_a_deleted_id_can_be_created_afresh(self, store: Store) -> None:
        """Nothing of a deleted workflow lingers, not even its signal dedup keys."""
        await store.create_workflow(workflow())
        await send(store, dedup_key="k")
        await store.delete_workflow("w-1")
        assert (await store.create_workflow(workflow()))[1] is True
        assert (await send(store, dedup_key="k"))[1] is True

    async def test_delete_of_an_unknown_id_returns_false(self, store: Store) -> None:
        """Deleting nothing reports False."""
        assert await store.delete_workflow("missing") is False

    async def test_delete_leaves_other_workflows_alone(self, store: Store) -> None:
        """Only the named workflow and its rows are deleted."""
        await claimed(store, "keep")
        await send(store, "keep")
        await store.create_workflow(workflow("drop"))
        await store.delete_workflow("drop")
        assert await store.get_workflow("keep") is not None
        assert len(await store.list_signals("keep")) == 1

    async def test_purge_deletes_listed_statuses_finished_before_the_cutoff(
        self, store: Store
    ) -> None:
        """Finished strictly before the cutoff, in a listed status: deleted and counted."""
        done = WorkflowStatus.COMPLETED
        await store.create_workflow(workflow("old", status=done, finished_at=NOW - 1))
        await store.create_workflow(workflow("cutoff", status=done, finished_at=NOW))
        await store.create_workflow(
            workflow("failed", status=WorkflowStatus.FAILED, finished_at=NOW - 1)
        )
        await store.create_workflow(workflow("live", created_at=NOW - 5))
        purged = await store.purge_workflows(finished_before=NOW, statuses=[done])
        assert purged == 1
        assert ids(await store.list_workflows()) == ["live", "cutoff", "failed"]

    async def test_purge_removes_the_children_rows(self, store: Store) -> None:
        """A purged workflow's operations and signals are gone too."""
        fence = await claimed(store)
        await store.record_operation(fence, operation())
        await send(store)
        await store.set_workflow_status(fence, WorkflowStatus.COMPLETED, now=NOW)
        assert (
            await store.purge_workflows(
                finished_before=NOW + 1, statuses=[WorkflowStatus.COMPLETED]
            )
            == 1
        )
        assert (await store.load_history("w-1")).operations == {}
        assert await store.list_signals("w-1") == []

    async def test_purge_never_deletes_unfinished_workflows(self, store: Store) -> None:
        """A workflow without finished_at is kept even if its status is listed."""
        await store.create_workflow(workflow("parked", status=WorkflowStatus.PARKED))
        purged = await store.purge_workflows(
            finished_before=NOW + 1, statuses=[WorkflowStatus.PARKED]
        )
        assert purged == 0
        assert await store.get_workflow("parked") is not None

    async def test_purge_with_no_statuses_deletes_nothing(self, store: Store) -> None:
        """An empty status list matches nothing."""
        await store.create_workflow(workflow(status=WorkflowStatus.COMPLETED, finished_at=NOW - 1))
        assert await store.purge_workflows(finished_before=NOW, statuses=[]) == 0

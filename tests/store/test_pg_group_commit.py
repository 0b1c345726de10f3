"""Group commit on PostgreSQL (checkpoints and final statuses): concurrent writes share
transactions, each still learns its own outcome, and a refused write fails alone."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.conftest import postgres_url

from durably.errors import LeaseLostError, StoreError
from durably.models import WorkflowStatus
from durably.store.postgres import PostgresStore
from durably.store.postgres._group_commit import GroupCommitter
from durably.testing._contract.records import NOW, claimed, operation, workflow


@pytest.fixture
async def store(postgres_schema: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=2)
    await store.open()
    yield store
    await store.close()


async def test_concurrent_checkpoints_share_transactions(store: PostgresStore) -> None:
    fences = [await claimed(store, f"w-{i}") for i in range(40)]
    await asyncio.gather(
        *(store.record_operation(fence, operation(fence.workflow_id, 0)) for fence in fences)
    )
    committer = store._checkpoints
    assert committer.writes == 40
    assert committer.transactions < 40  # written together, not one commit each
    for fence in fences:
        history = await store.load_history(fence.workflow_id)
        assert list(history.operations) == [0]


async def test_a_stale_fence_in_a_batch_is_refused_alone(store: PostgresStore) -> None:
    fences = [await claimed(store, f"w-{i}") for i in range(10)]
    stale = dataclasses.replace(fences[3], fence=fences[3].fence + 7)
    writes = [
        store.record_operation(stale if i == 3 else fence, operation(fence.workflow_id, 0))
        for i, fence in enumerate(fences)
    ]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(outcomes[3], LeaseLostError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [None] * 9
    assert not (await store.load_history("w-3")).operations
    assert len((await store.load_history("w-4")).operations) == 1


async def test_checkpoints_written_before_close_are_committed(postgres_schema: str) -> None:
    store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=2)
    await store.open()
    fences = [await claimed(store, f"w-{i}") for i in range(5)]
    tasks = [
        asyncio.create_task(store.record_operation(f, operation(f.workflow_id, 0))) for f in fences
    ]
    await asyncio.sleep(0)  # queued, not yet committed
    await store.close()
    await asyncio.gather(*tasks)
    await store.open()
    try:
        for fence in fences:
            assert len((await store.load_history(fence.workflow_id)).operations) == 1
    finally:
        await store.close()


async def test_concurrent_final_statuses_share_transactions(store: PostgresStore) -> None:
    """40 workflows finishing at once: each gets its own finished record, in fewer
    transactions than workflows, and each finish is announced to listeners."""
    fences = [await claimed(store, f"w-{i}") for i in range(40)]
    changes = store.changes()
    assert (await anext(changes)).kind == "work"  # listening from here on
    try:
        records = await asyncio.gather(
            *(
                store.set_workflow_status(
                    fence, WorkflowStatus.COMPLETED, now=NOW + 5, result=f'"{fence.workflow_id}"'
                )
                for fence in fences
            )
        )
        committer = store._statuses
        assert committer.writes == 40
        assert committer.transactions < 40
        for fence, record in zip(fences, records, strict=True):
            assert (record.workflow_id, record.status) == (fence.workflow_id, "COMPLETED")
            assert (record.result, record.owner, record.lease_until, record.finished_at) == (
                f'"{fence.workflow_id}"',
                None,
                None,
                NOW + 5,
            )
            assert await store.get_workflow(fence.workflow_id) == record
        announced: set[str | None] = set()
        while len(announced) < 40:
            change = await asyncio.wait_for(anext(changes), 30)
            if change.kind == "workflow":
                announced.add(change.workflow_id)
        assert announced == {fence.workflow_id for fence in fences}
    finally:
        await changes.aclose()


async def test_refused_status_changes_in_a_batch_fail_alone(store: PostgresStore) -> None:
    """In one batch, a stale fence and a transition the state machine forbids are
    refused with LeaseLostError saying why; the other changes are made."""
    fences = [await claimed(store, f"w-{i}") for i in range(10)]
    stale = dataclasses.replace(fences[3], fence=fences[3].fence + 7)
    changes = [
        store.set_workflow_status(stale, WorkflowStatus.FAILED, now=NOW + 5, error='"x"')
        if i == 3
        else store.set_workflow_status(fence, WorkflowStatus.COMPENSATED, now=NOW + 5)
        if i == 6
        else store.set_workflow_status(fence, WorkflowStatus.FAILED, now=NOW + 5, error='"x"')
        for i, fence in enumerate(fences)
    ]
    outcomes = await asyncio.gather(*changes, return_exceptions=True)
    assert isinstance(outcomes[3], LeaseLostError)
    assert isinstance(outcomes[6], LeaseLostError)
    assert "RUNNING, which cannot move to COMPENSATED" in str(outcomes[6])
    assert store._statuses.transactions < 10
    for i, fence in enumerate(fences):
        stored = await store.get_workflow(fence.workflow_id)
        assert stored is not None
        if i in (3, 6):
            assert (stored.status, stored.owner) == ("RUNNING", fence.owner)
        else:
            assert stored.status == "FAILED" and stored == outcomes[i]


async def test_concurrent_creations_share_transactions(store: PostgresStore) -> None:
    """40 workflows created at once are each created once, in fewer transactions."""
    records = [workflow(f"w-{i:02}", input=f'"{i}"') for i in range(40)]
    outcomes = await asyncio.gather(*(store.create_workflow(record) for record in records))
    assert [(stored, created) for stored, created in outcomes] == [(r, True) for r in records]
    assert store._creations.writes == 40
    assert store._creations.transactions < 40
    for record in records:
        assert await store.get_workflow(record.workflow_id) == record


async def test_a_taken_id_in_a_batch_returns_the_existing_workflow(store: PostgresStore) -> None:
    """Creating ids that are taken, in a batch with new ones and twice at once: each
    taken id returns the workflow stored first (created False); nothing is replaced."""
    first = workflow("w-taken", input='"first"')
    await store.create_workflow(first)
    again = workflow("w-taken", input='"second"')
    fresh = [workflow(f"w-{i}") for i in range(5)]
    twice = workflow("w-twice", input='"a"'), workflow("w-twice", input='"b"')
    outcomes = await asyncio.gather(
        store.create_workflow(again),
        *(store.create_workflow(record) for record in fresh),
        *(store.create_workflow(record) for record in twice),
    )
    assert outcomes[0] == (first, False)
    assert outcomes[1:6] == [(record, True) for record in fresh]
    assert sorted(created for _, created in outcomes[6:]) == [False, True]
    stored_twice = await store.get_workflow("w-twice")
    assert [stored for stored, _ in outcomes[6:]] == [stored_twice, stored_twice]
    assert await store.get_workflow("w-taken") == first


class _Fake:
    """Write functions that record how they were called; one params value fails."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.singles: list[int] = []
        self.release = asyncio.Event()

    async def one(self, params: dict[str, Any]) -> bool:
        await self.release.wait()
        self.singles.append(params["n"])
        if params["n"] == 13:
            raise StoreError("refused: 13")
        return params["n"] % 2 == 0

    async def many(self, batch: list[dict[str, Any]]) -> list[bool]:
        self.batches.append([p["n"] for p in batch])
        if any(p["n"] == 13 for p in batch):
            raise StoreError("the batch holds 13")
        return [p["n"] % 2 == 0 for p in batch]


async def test_writes_queued_behind_a_commit_go_in_one_batch() -> None:
    fake = _Fake()
    committer = GroupCommitter(fake.one, fake.many, key=lambda p: p["n"])
    first = asyncio.create_task(committer.submit({"n": 0}))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the lone first write is in flight
    rest = [asyncio.create_task(committer.submit({"n": n})) for n in range(1, 6)]
    await asyncio.sleep(0)
    fake.release.set()
    assert await first is True
    assert [await task for task in rest] == [False, True, False, True, False]
    assert fake.singles == [0]
    assert fake.batches == [[1, 2, 3, 4, 5]]
    assert (committer.transactions, committer.writes) == (2, 6)


async def test_a_refused_write_fails_alone_when_its_batch_is_retried_one_by_one() -> None:
    fake = _Fake()
    fake.release.set()
    committer = GroupCommitter(fake.one, fake.many, key=lambda p: p["n"])
    outcomes = await asyncio.gather(
        *(committer.submit({"n": n}) for n in (12, 13, 14)), return_exceptions=True
    )
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], StoreError) and "13" in str(outcomes[1])
    assert fake.batches == [[12, 13, 14]]
    assert fake.singles == [12, 13, 14]


async def test_a_cancelled_caller_does_not_withdraw_its_write() -> None:
    fake = _Fake()
    committer = GroupCommitter(fake.one, fake.many, key=lambda p: p["n"])
    task = asyncio.create_task(committer.submit({"n": 2}))
    await asyncio.sleep(0)
    task.cancel()
    fake.release.set()
    await committer.flush()
    assert fake.singles == [2]
    assert task.cancelled()


async def test_two_writes_of_one_row_never_share_a_batch() -> None:
    fake = _Fake()
    fake.release.set()
    committer = GroupCommitter(fake.one, fake.many, key=lambda p: p["n"] // 10)
    await asyncio.gather(*(committer.submit({"n": n}) for n in (10, 20, 11, 30, 21)))
    assert fake.batches == [[10, 20, 30], [11, 21]]

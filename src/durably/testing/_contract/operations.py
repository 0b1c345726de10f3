"""Contract: the narrow read of recorded operations behind events and streams."""

from __future__ import annotations

from durably.models import OperationKind
from durably.store.base import Store
from durably.testing._contract.records import TRICKY, claimed, operation

EVENT = OperationKind.EVENT
STREAM = OperationKind.STREAM
STREAM_CLOSE = OperationKind.STREAM_CLOSE


class OperationsContract:
    """list_operations."""

    async def test_operations_are_listed_by_kind_and_name_in_seq_order(self, store: Store) -> None:
        """Only the given kinds, only the given name (None: any), ordered by seq."""
        fence = await claimed(store)
        recorded = [
            operation(seq=4, kind=STREAM, name="tokens", result='"c"'),
            operation(seq=0, kind=STREAM, name="tokens", result='"a"'),
            operation(seq=1, kind=OperationKind.STEP, name="tokens"),
            operation(seq=2, kind=EVENT, name="tokens", result="1"),
            operation(seq=3, kind=STREAM, name="other", result='"b"'),
            operation(seq=5, kind=STREAM_CLOSE, name="tokens", result=None),
        ]
        for record in recorded:
            await store.record_operation(fence, record)
        by_seq = {record.seq: record for record in recorded}
        streams = await store.list_operations("w-1", kinds=[STREAM, STREAM_CLOSE], name="tokens")
        assert streams == [by_seq[0], by_seq[4], by_seq[5]]
        events = await store.list_operations("w-1", kinds=[EVENT])
        assert events == [by_seq[2]]
        any_name = await store.list_operations("w-1", kinds=[STREAM])
        assert [record.seq for record in any_name] == [0, 3, 4]
        assert await store.list_operations("w-1", kinds=[]) == []

    async def test_only_operations_after_the_given_seq_are_listed(self, store: Store) -> None:
        """``after_seq`` excludes it and everything before it."""
        fence = await claimed(store)
        for seq in range(5):
            await store.record_operation(fence, operation(seq=seq, kind=STREAM, name="s"))
        listed = await store.list_operations("w-1", kinds=[STREAM], name="s", after_seq=2)
        assert [record.seq for record in listed] == [3, 4]
        assert await store.list_operations("w-1", kinds=[STREAM], after_seq=4) == []

    async def test_compensations_are_not_listed_by_default(self, store: Store) -> None:
        """The default ``after_seq`` of -1 lists body operations (seq >= 0) only."""
        fence = await claimed(store)
        await store.record_operation(fence, operation(seq=-1, kind=STREAM, name="s"))
        await store.record_operation(fence, operation(seq=0, kind=STREAM, name="s"))
        listed = await store.list_operations("w-1", kinds=[STREAM])
        assert [record.seq for record in listed] == [0]

    async def test_other_workflows_and_unknown_ids_list_nothing(self, store: Store) -> None:
        """Operations belong to their workflow; an unknown id has none."""
        fence = await claimed(store)
        await claimed(store, "w-2")
        await store.record_operation(fence, operation(seq=0, kind=EVENT, name=TRICKY))
        assert await store.list_operations("w-2", kinds=[EVENT]) == []
        assert await store.list_operations("missing", kinds=[EVENT]) == []
        listed = await store.list_operations("w-1", kinds=[EVENT], name=TRICKY)
        assert [record.name for record in listed] == [TRICKY]

"""The in-process notifier's hand-over of a workflow's final record to its watchers."""

from __future__ import annotations

from durably.models import WorkflowRecord, WorkflowStatus
from durably.notifier import Notifier
from durably.testing.clock import FakeClock


def ended(workflow_id: str = "w-1") -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=workflow_id,
        workflow_name="checkout",
        status=WorkflowStatus.COMPLETED,
        result="42",
        created_at=1,
        updated_at=2,
    )


def test_a_watcher_gets_the_final_record_of_an_end_after_its_last_look() -> None:
    notifier = Notifier(FakeClock())
    with notifier.watching("w-1"):
        seen = notifier.generation("w-1")
        assert notifier.final("w-1", since=seen) is None
        notifier.notify("w-1", final=ended())
        assert notifier.final("w-1", since=seen) == ended()
        notifier.notify("w-1")  # another notice of the same end changes nothing
        assert notifier.final("w-1", since=seen) == ended()


def test_a_watcher_that_looked_after_the_end_reads_the_store() -> None:
    """The hand-over is news only to those who looked before it: a later look may have
    seen a newer state (resumed by an operator, say)."""
    notifier = Notifier(FakeClock())
    with notifier.watching("w-1"):
        notifier.notify("w-1", final=ended())
        assert notifier.final("w-1", since=notifier.generation("w-1")) is None


def test_nothing_is_kept_for_a_workflow_nobody_watches() -> None:
    notifier = Notifier(FakeClock())
    notifier.notify("w-1", final=ended())
    with notifier.watching("w-1"):
        assert notifier.final("w-1", since=-1) is None
    with notifier.watching("w-2"):
        notifier.notify("w-2", final=ended("w-2"))
    with notifier.watching("w-2"):  # the last watcher left: the record went with it
        assert notifier.final("w-2", since=-1) is None

"""The in-process notifier: the hand-over of a workflow's final record to its
watchers, and waits that end on a notification or at a time limit."""

from __future__ import annotations

import asyncio

from durably.models import WorkflowRecord, WorkflowStatus
from durably.notifier import Notifier
from durably.step_call import enter_workflow_body
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


# -- waiting: a notification, or the clock reaching the wait's limit -----------------


async def _yield_to_the_loop(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


async def test_waits_outside_workflows_give_up_in_order_of_their_limits() -> None:
    clock = FakeClock()
    notifier = Notifier(clock)
    start = clock.now()
    tasks_before = len(asyncio.all_tasks())
    late = asyncio.ensure_future(notifier.wait("w-late", start + 30))
    early = asyncio.ensure_future(notifier.wait("w-early", start + 10))  # sooner than late
    middle = asyncio.ensure_future(notifier.wait("w-middle", start + 20))
    notified = asyncio.ensure_future(notifier.wait("w-notified", start + 20))
    await clock.wait_for_sleepers()
    assert clock.sleepers()[0].moment == start + 10  # the sleep now ends at the earliest

    clock.set(start + 15)
    await _yield_to_the_loop()
    assert early.done() and early.result() is False
    assert not late.done() and not middle.done()

    notifier.notify("w-notified")
    await _yield_to_the_loop()
    assert notified.result() is True

    clock.set(start + 25)
    await _yield_to_the_loop()
    assert middle.result() is False
    assert not late.done()

    notifier.notify("w-late")
    assert await late is True
    await _yield_to_the_loop()
    # No wait left: nothing sleeps on the clock, no task is left behind.
    assert clock.pending_sleepers() == 0
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_wait_notified_before_its_limit_returns_true_at_once() -> None:
    clock = FakeClock()
    notifier = Notifier(clock)
    with notifier.watching("w-1"):
        seen = notifier.generation("w-1")
        notifier.notify("w-1")
        assert await notifier.wait("w-1", clock.now() + 10, since=seen) is True


class _ClockWhoseSleepsEndAtOnce:
    """Time stands still and every sleep ends at once (the dry run's clock)."""

    def now(self) -> int:
        return 1_000

    async def sleep_until(self, moment: int) -> None:
        await asyncio.sleep(0)


async def test_a_clock_whose_sleeps_end_at_once_ends_the_waits() -> None:
    notifier = Notifier(_ClockWhoseSleepsEndAtOnce())
    results = await asyncio.wait_for(
        asyncio.gather(notifier.wait("w-1", 2_000), notifier.wait("w-2", 3_000)), timeout=10
    )
    assert results == [False, False]


async def test_a_wait_in_a_workflow_body_sleeps_as_that_body() -> None:
    """The test kit's time skipping tells a run's waits by the workflow context of
    the task that sleeps: a body's wait sleeps in a task of its own, in its context."""
    clock = FakeClock()
    notifier = Notifier(clock)
    body = object()

    async def in_body() -> bool:
        enter_workflow_body(body)
        return await notifier.wait("w-1", clock.now() + 10)

    waiting = asyncio.ensure_future(in_body())
    await clock.wait_for_sleepers()
    assert [sleeper.workflow_context for sleeper in clock.sleepers()] == [body]
    clock.advance(1)
    assert await waiting is False

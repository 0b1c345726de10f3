"""Signals sent while no worker runs, and duplicate signals with and without dedup keys,
on every store: none is lost, none is delivered twice, FIFO order holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from durably import Context, Durably, WorkflowStatus
from durably.clock import SystemClock
from durably.testing import FakeClock


def register(app: Durably) -> None:
    @app.workflow(name="collect")
    async def collect(ctx: Context, count: int) -> list[object]:
        return [await ctx.wait_signal("item") for _ in range(count)]

    @app.workflow(name="drain")
    async def drain(ctx: Context, count: int) -> list[object]:
        return [await ctx.wait_signal("item", timeout=timedelta(minutes=1)) for _ in range(count)]


def make(app_factory: Callable[..., Durably], **options: object) -> Durably:
    app = app_factory(inline_wait=0, **options)
    register(app)
    return app


async def wait_for_status(app: Durably, workflow_id: str, status: WorkflowStatus) -> None:
    async for info in app.watch(workflow_id):
        if info.status is status:
            return


async def test_signals_sent_while_no_worker_runs_are_delivered_once_when_one_starts(
    app_factory: Callable[..., Durably], record_property: Callable[[str, object], None]
) -> None:
    """A workflow suspended on a signal, and one started by a client and never run yet:
    signals (some sent twice with their dedup key) are sent while no worker exists;
    the worker started later delivers each exactly once, in the order sent."""
    first_worker = make(app_factory)
    async with first_worker:
        await first_worker.start("collect", 4, workflow_id="suspended")
        await wait_for_status(first_worker, "suspended", WorkflowStatus.SUSPENDED)

    client = make(app_factory, worker=False)
    sent: list[bool] = []
    async with client:
        await client.start("collect", 4, workflow_id="never-ran")
        assert await client.handle("never-ran").status() is WorkflowStatus.PENDING
        for workflow_id in ("suspended", "never-ran"):
            for item, key in (("a", "k-a"), ("b", "k-b"), ("a", "k-a"), ("c", None), ("d", "k-d")):
                sent.append(await client.send_signal(workflow_id, "item", item, dedup_key=key))
            sent.append(await client.send_signal(workflow_id, "item", "b", dedup_key="k-b"))

    worker = make(app_factory)
    async with worker:
        for workflow_id in ("suspended", "never-ran"):
            assert await worker.handle(workflow_id).result() == ["a", "b", "c", "d"]
            inbox = await worker.store.list_signals(workflow_id)
            assert [signal.payload for signal in inbox] == ['"a"', '"b"', '"c"', '"d"']
            consumed = [signal.consumed_seq for signal in inbox]
            assert None not in consumed and len(set(consumed)) == 4
    assert sent.count(False) == 4  # the duplicates, and only them
    record_property("faults_injected", len(sent))


async def test_one_dedup_key_sent_concurrently_by_two_clients_is_applied_once(
    app_factory: Callable[..., Durably], record_property: Callable[[str, object], None]
) -> None:
    """Ten concurrent sends with one dedup key from two client apps (two
    connections): exactly one is appended and delivered; resending that key after it
    was consumed, even after the workflow finished, is still a quiet duplicate.

    (Real time here: the clients are other apps, whose sends the worker learns of by
    polling every 10 ms, or by NOTIFY on PostgreSQL.)
    """
    options = {"clock": SystemClock(), "poll_interval": timedelta(milliseconds=10)}
    worker = make(app_factory, **options)
    left = make(app_factory, worker=False, **options)
    right = make(app_factory, worker=False, **options)
    async with worker, left, right:
        handle = await worker.start("collect", 1, workflow_id="deduplicated")
        # Sent as soon as the workflow is suspended, while its run may still be ending
        # here: a claim made then runs it once that run is gone.
        await wait_for_status(worker, "deduplicated", WorkflowStatus.SUSPENDED)
        sends = [
            client.send_signal("deduplicated", "item", "paid", dedup_key="payment-17")
            for client in (left, right)
            for _ in range(5)
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        assert errors == []
        assert results.count(True) == 1, results
        assert await handle.result() == ["paid"]
        assert (
            await left.send_signal("deduplicated", "item", "paid", dedup_key="payment-17") is False
        )
        inbox = await worker.store.list_signals("deduplicated")
    assert len(inbox) == 1 and inbox[0].consumed_seq is not None
    record_property("faults_injected", len(sends))


async def test_duplicate_signals_without_a_dedup_key_are_each_delivered_in_order(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The same payload sent three times without a key is three signals: three waits
    get one each, in order; the fourth wait times out (nothing invented, none lost)."""
    app = make(app_factory)
    async with app:
        handle = await app.start("drain", 4, workflow_id="duplicates")
        await wait_for_status(app, "duplicates", WorkflowStatus.SUSPENDED)
        for payload in ("same", "same", "same"):
            assert await app.send_signal("duplicates", "item", payload) is True
        result = asyncio.ensure_future(handle.result())
        for _ in range(1_000):  # move virtual time on until the last wait times out
            if result.done():
                break
            await clock.wait_for_sleepers(1)
            clock.advance(timedelta(seconds=5))  # under the heartbeat interval
            await asyncio.sleep(0)
        assert await result == ["same", "same", "same", None]
        inbox = await app.store.list_signals("duplicates")
    assert [signal.consumed_seq is not None for signal in inbox] == [True, True, True]

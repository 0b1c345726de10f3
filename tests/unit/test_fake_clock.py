"""The virtual clock used by tests and by users' tests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from durably.testing import FakeClock


async def test_sleepers_wake_in_order_when_the_clock_passes_them() -> None:
    """advance wakes due sleepers in deadline order and no others."""
    clock = FakeClock()
    start = clock.now()
    woken: list[str] = []

    async def sleeper(name: str, seconds: int) -> None:
        await clock.sleep_until(start + seconds * 1_000_000)
        woken.append(name)

    tasks = [asyncio.ensure_future(sleeper(n, s)) for n, s in [("b", 2), ("a", 1), ("c", 3)]]
    await clock.wait_for_sleepers(3)
    clock.advance(timedelta(seconds=2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert woken == ["a", "b"]
    clock.advance(1)
    await asyncio.gather(*tasks)
    assert woken == ["a", "b", "c"]


async def test_moving_backwards_wakes_nobody() -> None:
    """A backward clock jump leaves sleepers asleep."""
    clock = FakeClock()
    task = asyncio.ensure_future(clock.sleep_until(clock.now() + 10))
    await clock.wait_for_sleepers(1)
    clock.set(clock.now() - 1_000_000)
    await asyncio.sleep(0)
    assert not task.done()
    assert clock.next_deadline() is not None
    task.cancel()


async def test_cancelled_sleepers_are_removed() -> None:
    """A cancelled sleep no longer counts as a sleeper."""
    clock = FakeClock()
    task = asyncio.ensure_future(clock.sleep_until(clock.now() + 10))
    await clock.wait_for_sleepers(1)
    task.cancel()
    await asyncio.sleep(0)
    assert clock.pending_sleepers() == 0


async def test_due_moments_return_at_once() -> None:
    """sleep_until a past moment does not wait for the clock."""
    clock = FakeClock()
    await clock.sleep_until(clock.now())
    assert clock.pending_sleepers() == 0

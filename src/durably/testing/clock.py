"""A virtual clock for tests: durable sleeps and timeouts advance only on request.

:class:`~durably.testing.TestDurably` drives it by itself (it skips time while every
workflow waits on a timer); a plain ``Durably(clock=FakeClock())`` moves only when the
test calls :meth:`FakeClock.advance` or :meth:`FakeClock.set`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from durably.models import datetime_to_micros
from durably.step_call import workflow_body_context

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Sleeper:
    """A task waiting on the clock, and who it waits for."""

    #: The moment it waits for (UTC epoch microseconds).
    moment: int
    #: The asyncio task that sleeps.
    task: asyncio.Task[Any] | None
    #: The workflow context whose body the sleep belongs to (None outside bodies).
    workflow_context: object | None


class FakeClock:
    """Implements :class:`durably.clock.Clock` with virtual time.

    ``advance()`` and ``set()`` move time and wake every sleeper whose moment has come,
    in order. Moving backwards is allowed (clock-jump tests) and wakes nobody.
    """

    def __init__(self, start: datetime | int = DEFAULT_START) -> None:
        self._now = start if isinstance(start, int) else datetime_to_micros(start)
        self._sleepers: list[tuple[int, int, asyncio.Future[None], Sleeper]] = []
        self._order = itertools.count()
        self._changed: asyncio.Condition | None = None

    def now(self) -> int:
        """The virtual time in UTC epoch microseconds."""
        return self._now

    async def sleep_until(self, moment: int) -> None:
        """Wait until the virtual clock reaches ``moment``."""
        if moment <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper = Sleeper(moment, asyncio.current_task(), workflow_body_context())
        heapq.heappush(self._sleepers, (moment, next(self._order), future, sleeper))
        await self._notify()
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            self._sleepers = [entry for entry in self._sleepers if entry[2] is not future]
            heapq.heapify(self._sleepers)

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward and wake the sleepers that are due."""
        micros = (
            round(delta.total_seconds() * 1_000_000)
            if isinstance(delta, timedelta)
            else round(delta * 1_000_000)
        )
        self.set(self._now + micros)

    def set(self, moment: datetime | int) -> None:
        """Jump to ``moment`` (forwards or backwards)."""
        self._now = moment if isinstance(moment, int) else datetime_to_micros(moment)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future, _ = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def pending_sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for _, _, future, _ in self._sleepers if not future.done())

    def next_deadline(self) -> int | None:
        """The earliest moment a sleeper waits for."""
        pending = [moment for moment, _, future, _ in self._sleepers if not future.done()]
        return min(pending, default=None)

    def sleepers(self) -> list[Sleeper]:
        """Every task sleeping on this clock now, earliest moment first."""
        return [sleeper for _, _, future, sleeper in sorted(self._sleepers) if not future.done()]

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Return once at least ``count`` tasks sleep on this clock."""
        condition = self._condition()
        async with condition:
            await condition.wait_for(lambda: self.pending_sleepers() >= count)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        condition = self._condition()
        async with condition:
            condition.notify_all()

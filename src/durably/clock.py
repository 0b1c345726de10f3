"""Time, behind a small protocol so tests can use a virtual clock.

The engine never reads the time or sleeps except through a :class:`Clock`.
``durably.testing.FakeClock`` implements the same protocol with virtual time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time in UTC epoch microseconds, and a way to wait for it."""

    def now(self) -> int:
        """The current time in UTC epoch microseconds."""
        ...

    async def sleep_until(self, moment: int) -> None:
        """Return once ``now() >= moment`` (at once if it already is)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> int:
        """The current time in UTC epoch microseconds."""
        return time.time_ns() // 1_000

    async def sleep_until(self, moment: int) -> None:
        """Sleep on the event loop until the wall clock reaches ``moment``."""
        while True:
            remaining = moment - self.now()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining / 1_000_000)

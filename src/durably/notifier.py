"""In-process wake-ups: a workflow changed, a signal arrived, work is due.

Polling the store is the safety net for changes made by other processes; this is
the fast path within one process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from durably.clock import Clock


class Notifier:
    """Per-workflow change notifications and one "work is due" flag for the scheduler."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._waiters: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self.work_due = asyncio.Event()

    def notify(self, workflow_id: str) -> None:
        """Wake everything waiting on ``workflow_id``."""
        for waiter in self._waiters.pop(workflow_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def notify_work_due(self) -> None:
        """Tell the scheduler to look for claimable work now."""
        self.work_due.set()

    async def wait(self, workflow_id: str, until: int | None) -> bool:
        """Wait for a notification on ``workflow_id`` or for the clock to reach ``until``.

        Returns:
            True when notified, False when the time came first.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[workflow_id].add(waiter)
        timer = None if until is None else asyncio.ensure_future(self._clock.sleep_until(until))
        try:
            waitables: set[asyncio.Future[None]] = {waiter}
            if timer is not None:
                waitables.add(timer)
            await asyncio.wait(waitables, return_when=asyncio.FIRST_COMPLETED)
            return waiter.done()
        finally:
            if timer is not None:
                timer.cancel()
            waiters = self._waiters.get(workflow_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[workflow_id]

"""In-process wake-ups: a workflow changed, a signal arrived, work is due.

Polling the store is the safety net for changes made by other processes; this is
the fast path within one process.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import defaultdict

from durably.clock import Clock
from durably.models import WorkflowRecord
from durably.step_call import workflow_body_context


def progress_key(workflow_id: str) -> str:
    """The key to pass to :meth:`Notifier.generation`, :meth:`~Notifier.watching` and
    :meth:`~Notifier.wait` to be woken by every recorded step, not only by status
    changes (a control character cannot occur in a workflow id)."""
    return f"\x00progress\x00{workflow_id}"


#: The key woken when any workflow is created or changes status: pass it to
#: :meth:`Notifier.generation`, :meth:`~Notifier.watching` and :meth:`~Notifier.wait`
#: to watch lists of workflows.
ANY_WORKFLOW = "\x00any"


class Notifier:
    """Per-workflow change notifications and one "work is due" flag for the scheduler."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._waiters: defaultdict[str, set[asyncio.Future[bool]]] = defaultdict(set)
        self._generations: dict[str, int] = {}
        self._watchers: dict[str, int] = {}
        #: A workflow's final record as this process committed it, with the generation
        #: its notification made, kept while someone watches the workflow.
        self._final: dict[str, tuple[int, WorkflowRecord]] = {}
        self.work_due = asyncio.Event()
        #: The time limits of pending waits, earliest first: (until, tie-breaker,
        #: waiter). One task (``_timer``) sleeps until the earliest and gives up the
        #: waits whose time came; a wait that was notified first leaves its entry,
        #: dropped when its time comes or when no timed wait is left.
        self._deadlines: list[tuple[int, int, asyncio.Future[bool]]] = []
        self._tie_breaker = itertools.count()
        self._timed_waits = 0
        self._timer: asyncio.Task[None] | None = None
        self._timer_until: int | None = None

    def generation(self, workflow_id: str) -> int:
        """A counter of notifications about ``workflow_id``; read it before looking at the
        store and pass it to :meth:`wait` so that a change in between is not missed."""
        return self._generations.get(workflow_id, 0)

    def notify(self, workflow_id: str, *, final: WorkflowRecord | None = None) -> None:
        """Wake everything waiting on ``workflow_id``: its status or inbox changed.

        Args:
            workflow_id: The workflow that changed.
            final: Its record, when this process just committed its end: those
                watching it get it from :meth:`final` instead of reading it back.
        """
        self._fire(workflow_id)
        if final is not None and workflow_id in self._watchers:
            self._final[workflow_id] = (self._generations[workflow_id], final)
        self._fire(progress_key(workflow_id))
        self._fire(ANY_WORKFLOW)

    def notify_listed(self) -> None:
        """Wake only those watching lists of workflows: one was created, claimed or
        suspended (news to nobody waiting on the workflow itself)."""
        self._fire(ANY_WORKFLOW)

    def final(self, workflow_id: str, *, since: int) -> WorkflowRecord | None:
        """The record handed to :meth:`notify` when ``workflow_id`` ended in this
        process, if that was after the :meth:`generation` ``since`` (read by a
        watcher before its last look at the store): then it is news to that watcher,
        and as recent as the store could tell. Only kept while someone watches."""
        handed = self._final.get(workflow_id)
        if handed is None or handed[0] <= since:
            return None
        return handed[1]

    def notify_progress(self, workflow_id: str) -> None:
        """Wake only those watching ``workflow_id``'s steps (a step was recorded):
        waiters for a result are not woken by every step."""
        self._fire(progress_key(workflow_id))

    def _fire(self, key: str) -> None:
        if key in self._generations:
            self._generations[key] += 1
        for waiter in self._waiters.pop(key, ()):
            if not waiter.done():
                waiter.set_result(True)

    def notify_work_due(self) -> None:
        """Tell the scheduler to look for claimable work now."""
        self.work_due.set()

    def watching(self, workflow_id: str) -> _Watch:
        """Count notifications about ``workflow_id`` while the returned context is open."""
        return _Watch(self, workflow_id)

    async def wait(self, workflow_id: str, until: int | None, *, since: int | None = None) -> bool:
        """Wait for a notification on ``workflow_id`` or for the clock to reach ``until``.

        Args:
            workflow_id: The workflow to wait for.
            until: When to give up (None: never).
            since: A :meth:`generation` read earlier: return at once if it moved.

        Returns:
            True when notified, False when the time came first.
        """
        if since is not None and self.generation(workflow_id) != since:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters[workflow_id].add(waiter)
        # Outside workflow bodies (waiting for a result, watching), one task sleeps
        # for every wait: cheaper than a sleeping task per wait. A body's wait keeps
        # its own, made in the body's context: the test kit's clock tells whose it is.
        shared = until is not None and workflow_body_context() is None
        own_timer: asyncio.Task[None] | None = None
        if until is not None:
            if shared:
                self._timed_waits += 1
                self._add_deadline(until, waiter)
            else:
                own_timer = asyncio.ensure_future(self._give_up_at(until, waiter))
        try:
            return await waiter
        finally:
            if own_timer is not None:
                own_timer.cancel()
            elif shared:
                self._timed_waits -= 1
                if not self._timed_waits:
                    self._stop_timer()
            waiters = self._waiters.get(workflow_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[workflow_id]

    async def _give_up_at(self, until: int, waiter: asyncio.Future[bool]) -> None:
        await self._clock.sleep_until(until)
        if not waiter.done():
            waiter.set_result(False)

    def _add_deadline(self, until: int, waiter: asyncio.Future[bool]) -> None:
        heapq.heappush(self._deadlines, (until, next(self._tie_breaker), waiter))
        if self._timer_until is None or until < self._timer_until:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_until = until
            self._timer = asyncio.ensure_future(self._expire_deadlines(until))

    async def _expire_deadlines(self, until: int) -> None:
        """Sleep until ``until``, then give up every wait whose time came; again for
        the next one, until no wait is left."""
        deadlines = self._deadlines
        while True:
            await self._clock.sleep_until(until)
            reached = max(self._clock.now(), until)  # as the clock's sleep says
            while deadlines and deadlines[0][0] <= reached:
                waiter = heapq.heappop(deadlines)[2]
                if not waiter.done():
                    waiter.set_result(False)
            if not deadlines:
                self._timer, self._timer_until = None, None
                return
            until = self._timer_until = deadlines[0][0]

    def _stop_timer(self) -> None:
        """No timed wait is pending: drop the entries left by notified waits."""
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_until = None, None


class _Watch:
    """Keeps a workflow's generation counter alive while someone polls it."""

    def __init__(self, notifier: Notifier, workflow_id: str) -> None:
        self._notifier = notifier
        self._workflow_id = workflow_id

    def __enter__(self) -> _Watch:
        generations = self._notifier._generations
        generations.setdefault(self._workflow_id, 0)
        self._notifier._watchers[self._workflow_id] = (
            self._notifier._watchers.get(self._workflow_id, 0) + 1
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        watchers = self._notifier._watchers
        remaining = watchers.get(self._workflow_id, 1) - 1
        if remaining:
            watchers[self._workflow_id] = remaining
        else:
            watchers.pop(self._workflow_id, None)
            self._notifier._generations.pop(self._workflow_id, None)
            self._notifier._final.pop(self._workflow_id, None)

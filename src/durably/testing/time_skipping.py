"""Skipping idle time on a test app's virtual clock.

The clock jumps to the next moment something is due only when nothing else can
happen first:

* the event loop is quiet: no callback is ready to run (a woken task has not run yet,
  a claim or a store write is under way...);
* every workflow running in memory is idle: each operation it has in flight waits on
  the clock (a short sleep, a retry backoff, a signal wait's timeout or poll, a wait
  for a child workflow, a compensation's backoff; a ``ctx.map`` waits through its
  items). A step that is running, a ``def`` body between two
  operations, a run that is loading or finishing: all of them hold the clock.

The next due moment is the earliest of: those in-memory waits and the runs'
deadlines; the wake-up times of suspended workflows in the store; the lease expiry of
workflows owned by a dead executor (after a simulated crash); a waiter's timeout. When
a workflow is claimable but not claimed (held back by a queue's limits), the clock
moves to its next poll. While a run is in memory, one jump is never longer than the
heartbeat interval, so its lease is renewed on the way as in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from durably.context_core import ContextCore
from durably.models import WorkflowStatus
from durably.testing.clock import FakeClock, Sleeper

if TYPE_CHECKING:
    from durably.testing.app import TestDurably

SkipTime = Literal["when_waiting", "always", "never"]
"""When a test app's clock skips idle time:

* ``"when_waiting"`` (default): while the test waits for a workflow's result
  (``await app.run(...)``, ``await handle.result()``), an event (``app.get_event``),
  the next entry of a stream (``app.read_stream``) or change (``app.watch``), or calls
  :meth:`advance` / :meth:`wait_until_idle`. Between those calls time stands still, so
  a signal the test sends right after starting a workflow always arrives before its
  timeout.
* ``"always"``: whenever every workflow is idle; the timeout of a result or an event
  the test waits for is one of the moments the clock stops at.
* ``"never"``: only when the test moves ``app.clock`` itself.
"""

#: Statuses whose workflows may still need the clock to move.
_UNFINISHED = (
    WorkflowStatus.PENDING,
    WorkflowStatus.RUNNING,
    WorkflowStatus.COMPENSATING,
    WorkflowStatus.SUSPENDED,
)
#: Real seconds between looks while the loop is quiet but nothing can be skipped (a
#: step runs in a thread, or everything waits for a signal): doubles up to the maximum.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0005, 0.02
#: Without a readable ready queue (another event loop implementation), this many
#: consecutive yields without progress count as quiet.
_QUIET_ROUNDS = 20
_PAGE = 1_000

logger = logging.getLogger("durably.testing")


@dataclass(eq=False)
class _Request:
    """Someone wants time to pass: up to ``limit`` (None: as far as needed)."""

    limit: int | None
    #: An extra moment worth jumping to (a result waiter's timeout).
    deadline: int | None = None
    #: Resolved at the first idle moment at or after ``limit`` (advance / wait_until_idle).
    reached: asyncio.Future[None] | None = field(default=None)


class TimeSkipper:
    """Moves one test app's :class:`FakeClock` over idle time."""

    def __init__(self, app: TestDurably, clock: FakeClock, mode: SkipTime) -> None:
        self._app = app
        self._clock = clock
        self.mode: SkipTime = mode
        self._requests: list[_Request] = []
        self._always: _Request | None = None

    # -- used by the app ----------------------------------------------------------------

    def start(self) -> None:
        """Start skipping (``"always"`` mode skips from now on)."""
        if self.mode == "always" and self._always is None:
            self._always = _Request(limit=None)
            self._add(self._always)

    def stop(self) -> None:
        """Stop skipping; pending ``advance`` calls fail."""
        for request in self._requests:
            if request.reached is not None and not request.reached.done():
                request.reached.set_exception(RuntimeError("the test app was closed"))
        self._requests.clear()
        self._always = None
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to stop
            _watcher().stop_if_unused()

    @contextlib.asynccontextmanager
    async def skipping(self, deadline: int | None = None) -> AsyncIterator[None]:
        """Skip idle time while the block runs (in ``"when_waiting"`` mode), stopping
        at ``deadline`` (a waiter's timeout) on the way (in ``"always"`` mode too)."""
        if self.mode == "never" or (self.mode == "always" and deadline is None):
            yield
            return
        request = _Request(limit=None, deadline=deadline)
        self._add(request)
        try:
            yield
        finally:
            self._remove(request)

    async def advance_to(self, moment: int) -> None:
        """Let time pass up to ``moment``, every timer on the way firing in order, and
        return once every workflow is idle there."""
        request = _Request(limit=moment, reached=asyncio.get_running_loop().create_future())
        self._add(request)
        try:
            assert request.reached is not None
            await request.reached
        finally:
            self._remove(request)

    # -- one look at the app, at a quiet moment ---------------------------------------------

    @property
    def is_active(self) -> bool:
        """Whether someone wants time to pass."""
        return bool(self._requests)

    async def step(self) -> bool:
        """Jump the clock if everything is idle; True when something changed."""
        app = self._app
        if not self._requests or not app._is_open or app._is_closing:
            return False
        sleepers = self._clock.sleepers()
        if _is_busy(app, sleepers):
            return False
        now = self._clock.now()
        changed = False
        for request in self._requests:
            reached = request.reached
            limit = request.limit
            if reached is not None and not reached.done() and limit is not None and limit <= now:
                reached.set_result(None)
                changed = True
        wanting = [r for r in self._requests if r.reached is None or not r.reached.done()]
        if not wanting:
            return changed
        bound = (
            None
            if any(r.limit is None for r in wanting)
            else max(r.limit for r in wanting if r.limit is not None)
        )
        due = await _due_moments(app, now, sleepers)
        due += [r.deadline for r in wanting if r.deadline is not None and r.deadline > now]
        if self._clock.now() != now or _is_busy(app, self._clock.sleepers()):
            return True  # the store call let something run: look again
        target = min(due, default=None)
        if target is None or (bound is not None and target > bound):
            target = bound if bound is not None and bound > now else None
        if target is None:
            return changed
        if app._runs:
            target = min(target, now + max(app._lease_duration // 3, 1))
        self._clock.set(target)
        return True

    def _add(self, request: _Request) -> None:
        self._requests.append(request)
        _watcher().add(self)

    def _remove(self, request: _Request) -> None:
        with contextlib.suppress(ValueError):
            self._requests.remove(request)


def _context_of(owner: object | None) -> object | None:
    """The async context behind a sleeper's workflow context (a ``def`` workflow's
    SyncContext wraps one)."""
    if owner is None or isinstance(owner, ContextCore):
        return owner
    return getattr(owner, "_context", None)


def _run_waits(
    context: ContextCore, task: asyncio.Future[Any], sleepers: list[Sleeper]
) -> list[Sleeper]:
    """The clock waits of one run: its body's (and a ``def`` body's operations') and
    its own task's (compensation backoffs)."""
    return [s for s in sleepers if s.task is task or _context_of(s.workflow_context) is context]


def _waiting_by_themselves(context: ContextCore) -> int:
    """How many of the run's operations in flight wait by themselves, each for its own
    moment or notification: all but the maps (``ctx.map``), which only wait for their
    items, themselves operations in flight."""
    return context._in_flight - getattr(context, "_maps_in_flight", 0)


def _is_busy(app: TestDurably, sleepers: list[Sleeper]) -> bool:
    """Whether something in memory may still act before any timer is due.

    A run is idle when it waits on the clock at least once and each of its operations
    in flight that waits by itself has a clock wait: a running step, a store write, a
    ``def`` body between two operations have none. A ``ctx.map`` does not count: it
    waits for its items, which count themselves.
    """
    if app._relaunch or app._test_kit_busy():
        return True
    for run, task in app._runs.values():
        context = run._context
        if task.done() or context is None:
            return True
        waits = _run_waits(context, task, sleepers)
        if not waits or len(waits) < _waiting_by_themselves(context):
            return True
    return False


async def _due_moments(app: TestDurably, now: int, sleepers: list[Sleeper]) -> list[int]:
    """Every later moment at which something is due, from memory and from the store."""
    moments: list[int] = []
    for run, task in app._runs.values():
        context = run._context
        if context is not None:
            moments += [s.moment for s in _run_waits(context, task, sleepers)]
        if run.record.deadline_at is not None:
            moments.append(run.record.deadline_at)
    # The cron scheduler's loop sleeps on the clock until the next tick: a tick is due then.
    scheduler_task = getattr(getattr(app, "_scheduler", None), "_task", None)
    if scheduler_task is not None:
        moments += [s.moment for s in sleepers if s.task is scheduler_task]
    held_back = bool(app._retry_tasks)
    names = list(app.registry.names())
    offset = 0
    while names:
        page = await app.store.list_workflows(
            statuses=_UNFINISHED, names=names, limit=_PAGE, offset=offset
        )
        for record in page:
            if record.workflow_id in app._runs:
                continue
            if record.status is WorkflowStatus.SUSPENDED:
                if record.wake_at is not None:
                    moments.append(record.wake_at)
                    held_back = held_back or record.wake_at <= now
            elif record.owner is None or record.lease_until is None or record.lease_until < now:
                held_back = True  # claimable now: the claim loop takes it at its next look
            elif record.owner != app.executor_id:
                moments.append(record.lease_until + 1)  # a dead executor's lease expires
        if len(page) < _PAGE:
            break
        offset += _PAGE
    if held_back:
        moments += [s.moment for s in sleepers[:1]]
    return [moment for moment in moments if moment > now]


# -- one watcher per event loop: yields until the loop is quiet, then asks the skippers --


class _LoopWatcher:
    """Finds the quiet moments of one event loop for every skipper on it (one task for
    all, so that two test apps do not keep each other's loop busy)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._skippers: weakref.WeakSet[TimeSkipper] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None

    def add(self, skipper: TimeSkipper) -> None:
        self._skippers.add(skipper)
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._watch(), name="durably-time-skipper")

    def stop_if_unused(self) -> None:
        """Stop the watching task when no skipper needs it (before the loop closes)."""
        if self._task is not None and not any(s.is_active for s in self._skippers):
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        pause = _FIRST_PAUSE
        rounds = 0
        while True:
            active = [skipper for skipper in self._skippers if skipper.is_active]
            if not active:
                return
            await asyncio.sleep(0)
            ready = _ready_callbacks(self._loop)
            if ready is None:
                rounds += 1
                if rounds < _QUIET_ROUNDS:
                    continue
            elif ready:
                pause = _FIRST_PAUSE
                continue
            changed = False
            for skipper in active:
                try:
                    changed = await skipper.step() or changed
                except Exception:  # a failed look (the store failed): look again later
                    logger.exception("durably.testing could not look for idle time")
            rounds = 0
            if changed:
                pause = _FIRST_PAUSE
                continue
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatcher] = (
    weakref.WeakKeyDictionary()
)


def _watcher() -> _LoopWatcher:
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = _LoopWatcher(loop)
    return watcher


def _ready_callbacks(loop: asyncio.AbstractEventLoop) -> int | None:
    """How many callbacks wait to run (None when this loop does not tell: the asyncio
    loops of CPython keep them in ``_ready``)."""
    ready = getattr(loop, "_ready", None)
    try:
        return len(ready)  # type: ignore[arg-type]
    except TypeError:
        return None

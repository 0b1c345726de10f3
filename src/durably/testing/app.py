"""An app for users' tests: in memory, on a virtual clock that skips idle time.

``TestDurably`` is a :class:`~durably.Durably` (same API, same engine) with:

* a :class:`MemoryStore` (or the store you pass) and a :class:`FakeClock` that jumps
  over idle time, so a workflow sleeping 30 days finishes at once (see
  :mod:`durably.testing.time_skipping`);
* :meth:`~TestDurably.crash_at`: crash the process at a step and recover in a new one
  (see :mod:`durably.testing.crash`);
* ``always_replay=True``: replay every workflow from the top after each live operation,
  to catch non-determinism (see :mod:`durably.testing.always_replay`).

``SyncTestDurably`` is the same for programs without ``async``.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, NoReturn, cast, get_args

from durably.context_core import ContextCore
from durably.engine import Durably
from durably.environment import to_micros
from durably.errors import NonDeterminismError, WorkflowFailedError, _Abandon
from durably.models import OperationKind, OperationRecord, WorkflowStatus
from durably.step_call import workflow_body_context
from durably.store import MemoryStore, Store, open_store
from durably.sync import SyncDurably
from durably.sync_context import SyncContext
from durably.testing.always_replay import AlwaysReplay
from durably.testing.clock import FakeClock
from durably.testing.crash import (
    CrashMoment,
    CrashPoint,
    DeadExecutorGuard,
    crash_moment,
    wait_for_tasks,
)
from durably.testing.time_skipping import SkipTime, TimeSkipper

__all__ = ["SyncTestDurably", "TestDurably", "crash_at"]


class TestDurably(Durably):
    """A :class:`~durably.Durably` for tests: in memory, with a clock that skips idle time.

    Use it exactly like ``Durably`` (``async with TestDurably() as app:``). While the
    test waits for a result, time jumps over every durable sleep, signal-wait timeout,
    retry backoff and deadline as soon as all workflows are idle, so
    ``await app.run(wf)`` of a workflow sleeping 30 days returns at once. Between such
    waits the clock stands still (see ``skip_time``).

    Differences from ``Durably``, all for tests:

    * the result of a workflow parked on non-determinism raises
      :class:`~durably.NonDeterminismError` itself (chained from the
      ``WorkflowFailedError``), so the test names the cause;
    * after a crash made by :meth:`crash_at`, ``executor_id`` changes: the app object
      is the new process.

    Args:
        store: Default: a new :class:`~durably.MemoryStore`. Pass one to share it
            between apps of one test. Time skipping is exact only in memory.
        clock: The virtual clock (default: a new :class:`FakeClock`); also ``app.clock``.
        skip_time: ``"when_waiting"`` (default), ``"always"`` or ``"never"`` (see
            :data:`~durably.testing.time_skipping.SkipTime`).
        always_replay: Replay each workflow from the top after every live operation.
        executor_id: The first process's id (default ``"test-process"``, or
            ``"test-process-<random hex>"`` with a store you pass); the process started
            after the n-th crash gets ``f"{executor_id}-{n + 1}"``.
        **options: Any other :class:`~durably.Durably` option.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        clock: FakeClock | None = None,
        skip_time: SkipTime = "when_waiting",
        always_replay: bool = False,
        executor_id: str | None = None,
        **options: Any,
    ) -> None:
        if skip_time not in get_args(SkipTime):
            raise ValueError(
                f"skip_time must be one of {', '.join(map(repr, get_args(SkipTime)))}, "
                f"got {skip_time!r}"
            )
        self.clock = FakeClock() if clock is None else clock
        if not isinstance(self.clock, FakeClock):
            raise TypeError(
                f"TestDurably needs a durably.testing.FakeClock, got {type(clock).__name__}; "
                f"use durably.Durably for another clock"
            )
        inner = MemoryStore() if store is None else store
        self._guard = DeadExecutorGuard(open_store(inner) if isinstance(inner, str) else inner)
        if executor_id is None:  # apps sharing a store need ids of their own
            executor_id = "test-process" if store is None else f"test-process-{os.urandom(3).hex()}"
        self._base_executor_id = executor_id
        super().__init__(
            cast(Store, self._guard),
            clock=self.clock,
            executor_id=self._base_executor_id,
            **options,
        )
        #: Replay every workflow from the top after each live operation (changeable).
        self.always_replay = always_replay
        self._processes = 1
        self._crash_points: list[CrashPoint] = []
        self._restart: asyncio.Future[None] | None = None
        self._replays = AlwaysReplay(self)
        self._skipper = TimeSkipper(self, self.clock, skip_time)
        self._env.hooks = _TestKitHooks(self)

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Open the app (see :meth:`Durably.open`) and start skipping idle time."""
        await super().open()
        self._skipper.start()

    async def close(self, *, grace: timedelta | float = 0) -> None:
        """Stop skipping time, then close (see :meth:`Durably.close`)."""
        await self._wait_for_restart()
        self._skipper.stop()
        await super().close(grace=grace)

    async def __aenter__(self) -> TestDurably:
        await self.open()
        return self

    # -- waiting, with time skipping ---------------------------------------------------------

    async def wait_for_result(
        self, workflow_id: str, *, timeout: timedelta | float | None = None
    ) -> object:
        """Wait for the workflow's result (see :meth:`Durably.wait_for_result`), skipping
        idle time meanwhile; ``timeout`` is on the virtual clock.

        Raises:
            NonDeterminismError: the workflow was parked because its replay diverged.
        """
        try:
            return await super().wait_for_result(workflow_id, timeout=timeout)
        except WorkflowFailedError as error:
            cause = error.__cause__
            if error.status == WorkflowStatus.PARKED and isinstance(cause, NonDeterminismError):
                raise NonDeterminismError(str(cause)) from error
            raise

    def _waiting(self, deadline: int | None = None) -> AbstractAsyncContextManager[None]:
        """Skip idle time while the test waits for a workflow (its result, an event,
        the next entry of a stream or change), stopping the clock at ``deadline``, the
        waiter's timeout, if nothing else is due before (see :class:`TimeSkipper`)."""
        return self._skipper.skipping(deadline)

    async def advance(self, duration: timedelta | float) -> None:
        """Let ``duration`` pass on the virtual clock: every timer due meanwhile fires in
        order, each workflow reacting before the next; return once all are idle.

        Raises:
            AppClosedError: the app is not open.
        """
        self._require_open()
        micros = to_micros(duration, "duration")
        if micros < 0:
            raise ValueError(f"advance() cannot go back in time, got {duration!r}")
        await self._skipper.advance_to(self.clock.now() + micros)

    async def wait_until_idle(self) -> None:
        """Return once every workflow in memory waits on a timer or a signal, or has
        stopped, without moving the clock (``advance(0)``)."""
        await self.advance(0)

    # -- crashes --------------------------------------------------------------------------------

    def crash_at(
        self,
        step: str,
        *,
        when: CrashMoment = "after",
        workflow_id: str | None = None,
    ) -> CrashPoint:
        """Crash this app's process at ``step``; the app goes on as a new process.

        Use as ``async with app.crash_at("charge", when="after"):`` around the code
        that runs the workflow (see :func:`crash_at`).
        """
        return CrashPoint(self, step, when=when, workflow_id=workflow_id)

    def _arm(self, point: CrashPoint) -> None:
        self._crash_points.append(point)

    def _disarm(self, point: CrashPoint) -> None:
        if point in self._crash_points:
            self._crash_points.remove(point)

    async def _wait_for_restart(self) -> None:
        while self._restart is not None and not self._restart.done():
            await asyncio.wait([self._restart])

    def _crash_if_armed(
        self, context: ContextCore, kind: OperationKind, name: str, moment: str
    ) -> None:
        if context._fence.owner != self.executor_id:
            return  # an operation of a process that already died
        for point in self._crash_points:
            if point.matches(context.workflow_id, kind, name, moment):
                self._crash(point, context)

    def _crash(self, point: CrashPoint, context: ContextCore) -> NoReturn:
        """Kill this process at once (nothing more is written or released), start a new
        one on this object, and stop the operation that reached the crash point."""
        dead = self.executor_id
        workflow_id = context.workflow_id
        point.fire(workflow_id, dead)
        self._guard.dead.add(dead)
        stopping: list[asyncio.Future[Any]] = [task for _, task in self._runs.values()]
        # The crashing operation of a def body stops its thread by raising below; the
        # run is only told, so that it waits for the thread to unwind.
        in_def_body = isinstance(workflow_body_context(), SyncContext)
        for run, _ in list(self._runs.values()):
            abandon = _Abandon(f"executor {dead!r} crashed (durably.testing)")
            if in_def_body and run._context is context:
                context.interrupt(abandon)
            else:
                run.interrupt(abandon)
        self._relaunch.clear()
        for retry in list(self._retry_tasks):
            retry.cancel()
        stopping += self._retry_tasks
        for loop in self._worker._tasks:
            loop.cancel()
        stopping += self._worker._tasks
        self._processes += 1
        self.executor_id = f"{self._base_executor_id}-{self._processes}"
        self._worker._executor_id = self.executor_id
        self._restart = asyncio.ensure_future(self._start_new_process(stopping))
        raise _Abandon(
            f"the process crashed {point.when.replace('_', ' ')} step {point.step!r} "
            f"of workflow {workflow_id!r} (durably.testing)"
        )

    async def _start_new_process(self, stopping: list[asyncio.Future[Any]]) -> None:
        await wait_for_tasks(stopping)
        await self._worker.stop()
        if self._is_open and not self._is_closing:
            await self._worker.start()

    def _test_kit_busy(self) -> bool:
        """Whether the test kit itself has work in progress (a restart, a replay)."""
        return bool(self._replays.pending) or (
            self._restart is not None and not self._restart.done()
        )


def crash_at(
    app: TestDurably | SyncTestDurably,
    step: str,
    *,
    when: CrashMoment = "after",
    workflow_id: str | None = None,
) -> CrashPoint:
    """Crash ``app``'s process the first time a workflow reaches ``step`` live.

    ::

        async with crash_at(app, "charge", when="before_record"):
            await app.run(checkout, order)   # crashes, recovers, returns the result

    The crash stops every run of the app at once: nothing more is recorded, no lease
    is released. The app goes on as a new process (a new ``executor_id``) that
    recovers the workflows once the dead process's leases expire, through the same
    claim and replay as a real recovery. ``when``: ``"before"`` the step runs,
    ``"before_record"`` (it ran, its result is lost: it runs again) or ``"after"``
    its result is recorded.

    Args:
        app: A :class:`TestDurably` (use ``async with``) or :class:`SyncTestDurably`
            (use ``with``).
        step: The step's name.
        when: ``"before"``, ``"before_record"`` or ``"after"`` (default).
        workflow_id: Only this workflow triggers the crash (default: any).

    Returns:
        The crash point; ``crashed`` tells whether it happened.
    """
    return app.crash_at(step, when=when, workflow_id=workflow_id)


class _TestKitHooks:
    """The test kit's :class:`~durably.run_hooks.RunHooks`: crash points and replays."""

    def __init__(self, app: TestDurably) -> None:
        self._app = app

    def operation_called(self, context: ContextCore) -> None:
        if self._app.always_replay:
            self._app._replays.at_operation(context)

    def running_live(self, context: ContextCore, kind: OperationKind, name: str, seq: int) -> None:
        self._app._replays.note_live(context)
        self._app._crash_if_armed(context, kind, name, "before")

    def recording(self, context: ContextCore, operation: OperationRecord, *, written: bool) -> None:
        if written:
            self._app._replays.note_live(context)
        moment = crash_moment(operation, written=written)
        if moment is not None:
            self._app._crash_if_armed(context, operation.kind, operation.name, moment)

    def body_ended(self, context: ContextCore) -> None:
        if self._app.always_replay:
            self._app._replays.at_body_end(context)


class SyncTestDurably(SyncDurably):
    """A blocking :class:`TestDurably`, for tests of programs without ``async``.

    Takes the same arguments as ``TestDurably``; use as ``with SyncTestDurably() as
    app:``. ``app.run(...)`` and ``handle.result()`` skip idle time.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, store: Store | str | None = None, **options: Any) -> None:
        super().__init__(MemoryStore())
        self.app: TestDurably = TestDurably(store, **options)

    @property
    def clock(self) -> FakeClock:
        """The virtual clock."""
        return self.app.clock

    @property
    def executor_id(self) -> str:
        """The current process's executor id (it changes after a crash)."""
        return self.app.executor_id

    def advance(self, duration: timedelta | float) -> None:
        """Let time pass (see :meth:`TestDurably.advance`)."""
        self.call(lambda: self.app.advance(duration), "advance")

    def wait_until_idle(self) -> None:
        """Wait until every workflow is idle (see :meth:`TestDurably.wait_until_idle`)."""
        self.call(self.app.wait_until_idle, "wait_until_idle")

    def crash_at(
        self,
        step: str,
        *,
        when: CrashMoment = "after",
        workflow_id: str | None = None,
    ) -> CrashPoint:
        """Crash the process at ``step``; use as ``with app.crash_at("charge"):`` (see
        :func:`crash_at`)."""
        return CrashPoint(self.app, step, when=when, workflow_id=workflow_id, portal_call=self.call)

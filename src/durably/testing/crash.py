"""Crash a test app's process at a chosen step, then let a new process recover it.

``crash_at(app, "charge", when="after")`` arms a crash point. The first time a
workflow of ``app`` reaches it live, the app's process "dies" as under SIGKILL: every
run stops where it is and writes nothing more (its store writes are refused from that
instant), the heartbeat and claim loops stop, no lease is released. The same app object
then carries on as a new process with a new ``executor_id``: it recovers the dead
process's workflows through the ordinary claim path once their leases expire (the
virtual clock skips to that moment while the test waits), replaying what was recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, get_args

from durably.errors import _Abandon
from durably.identifiers import validate_identifier
from durably.models import Fence, OperationKind, OperationRecord, OperationStatus
from durably.store.base import Store

if TYPE_CHECKING:
    from durably.testing.app import TestDurably

CrashMoment = Literal["before", "before_record", "after"]
"""Where the crash hits, relative to the step:

* ``"before"``: the step is about to run; its function is not called in the crashed run.
* ``"before_record"``: its function returned (its side effects happened) but its result
  is not recorded: the recovered run calls it again (at-least-once: make it idempotent).
* ``"after"``: its result is recorded; the recovered run replays it without calling it.
"""


class CrashPoint:
    """An armed crash, used as ``async with`` (or ``with`` on a sync test app).

    Leaving the block waits until the new process has started, and raises
    ``AssertionError`` when the block ended normally without the crash happening (a
    crash test that never crashed proves nothing).

    Attributes:
        step: The step name the crash waits for.
        when: ``"before"``, ``"before_record"`` or ``"after"`` (see :data:`CrashMoment`).
        workflow_id: Only this workflow crashes the process (None: any).
        crashed_workflow_id: The workflow that reached the point (None until then).
        dead_executor_id: The ``executor_id`` of the process that died.
    """

    def __init__(
        self,
        app: TestDurably,
        step: str,
        *,
        when: CrashMoment = "after",
        workflow_id: str | None = None,
        portal_call: Callable[[Callable[[], Coroutine[Any, Any, Any]], str], Any] | None = None,
    ) -> None:
        if when not in get_args(CrashMoment):
            raise ValueError(
                f"when must be one of {', '.join(map(repr, get_args(CrashMoment)))}, got {when!r}"
            )
        self.step = validate_identifier(step, "step name")
        self.when: CrashMoment = when
        self.workflow_id = (
            None if workflow_id is None else validate_identifier(workflow_id, "workflow_id")
        )
        self.crashed_workflow_id: str | None = None
        self.dead_executor_id: str | None = None
        self._app = app
        self._portal_call = portal_call
        self._happened: asyncio.Event | None = None

    def __repr__(self) -> str:
        state = "crashed" if self.crashed else "armed"
        return f"CrashPoint({self.step!r}, when={self.when!r}, {state})"

    @property
    def crashed(self) -> bool:
        """Whether the crash happened."""
        return self.crashed_workflow_id is not None

    async def wait(self) -> None:
        """Return once the crash has happened (inside the ``async with`` block)."""
        if self._happened is None:
            raise RuntimeError("wait() is for inside `async with crash_at(...)`")
        await self._happened.wait()

    def fire(self, workflow_id: str, dead_executor_id: str) -> None:
        """Record that the crash happened."""
        self.crashed_workflow_id = workflow_id
        self.dead_executor_id = dead_executor_id
        if self._happened is not None:
            self._happened.set()

    def matches(self, context_workflow_id: str, kind: OperationKind, name: str, when: str) -> bool:
        """Whether an operation boundary is this crash point (and it has not fired)."""
        return (
            not self.crashed
            and kind is OperationKind.STEP
            and name == self.step
            and when == self.when
            and (self.workflow_id is None or self.workflow_id == context_workflow_id)
        )

    # -- async use --------------------------------------------------------------------

    async def __aenter__(self) -> CrashPoint:
        self._happened = asyncio.Event()
        self._app._arm(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._app._disarm(self)
        await self._app._wait_for_restart()
        if exc_type is None and not self.crashed:
            where = "" if self.workflow_id is None else f" in workflow {self.workflow_id!r}"
            raise AssertionError(
                f"no workflow reached step {self.step!r} live{where} inside the block, so "
                f"the process never crashed {self.when!r} it; check the step name"
            )

    # -- sync use (SyncTestDurably) -----------------------------------------------------

    def __enter__(self) -> CrashPoint:
        call = self._require_portal()
        call(self.__aenter__, "crash_at.__enter__")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        call = self._require_portal()
        call(lambda: self.__aexit__(exc_type, exc, traceback), "crash_at.__exit__")

    def _require_portal(
        self,
    ) -> Callable[[Callable[[], Coroutine[Any, Any, Any]], str], Any]:
        if self._portal_call is None:
            raise TypeError(
                "this crash point belongs to an async TestDurably: use `async with`, or "
                "make it with SyncTestDurably.crash_at() to use `with`"
            )
        return self._portal_call


def crash_moment(operation: OperationRecord, *, written: bool) -> str | None:
    """The crash moment an operation record write stands for, if any."""
    if operation.kind is not OperationKind.STEP:
        return None
    if operation.status is not OperationStatus.COMPLETED:
        return None
    return "after" if written else "before_record"


class DeadExecutorGuard:
    """Wraps the test app's store: once an executor is declared dead, every write it
    attempts (fenced by its id, or made in its name) stops its run with nothing written,
    as if the process were gone. Everything else is delegated untouched."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.dead: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        def refused(*args: Any, **kwargs: Any) -> Any:
            for value in (*args, *kwargs.values()):
                if isinstance(value, Fence) and value.owner in self.dead:
                    raise _dead(value.owner, name)
            for key in ("owner", "executor_id"):
                if kwargs.get(key) in self.dead:
                    raise _dead(str(kwargs[key]), name)
            return attribute(*args, **kwargs)

        return refused


def _dead(executor_id: str, method: str) -> _Abandon:
    return _Abandon(f"executor {executor_id!r} crashed (durably.testing): {method} refused")


async def wait_for_tasks(tasks: list[asyncio.Future[Any]]) -> None:
    """Wait until every task has ended, whatever the outcome."""
    if tasks:
        await asyncio.wait(tasks)

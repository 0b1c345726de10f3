"""State and plumbing shared by every durable operation of a workflow context.

Sequence numbers, replay lookups, interrupts (cancellation, deadline, abandon), fenced
writes and waits that either stay in memory or unwind the workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from durably.environment import RunEnvironment
from durably.errors import (
    LeaseLostError,
    NonDeterminismError,
    StoreError,
    WorkflowTimeoutError,
    _Abandon,
    _Suspend,
)
from durably.models import (
    ErrorInfo,
    Fence,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
    micros_to_datetime,
)
from durably.replay import next_operation_seq, recorded_operation
from durably.saga import CompensationStack

T = TypeVar("T")


class ContextCore:
    """The part of a workflow context that operations are built on."""

    def __init__(
        self,
        env: RunEnvironment,
        *,
        workflow_id: str,
        workflow_name: str,
        fence: Fence,
        history: History,
        deadline_at: int | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.workflow_name = workflow_name
        self.compensations = CompensationStack()
        self.nondeterminism: NonDeterminismError | None = None
        self.visited: set[int] = set()
        self._env = env
        self._fence = fence
        self._history = history
        self._next_seq = 0
        self._last_recorded_seq = max((s for s in history.operations if s >= 0), default=-1)
        self._interrupt: BaseException | None = None
        self._interrupt_delivered = False
        self._deadline_at = deadline_at  # the workflow's, UTC epoch microseconds
        self._in_flight = 0
        #: Set when the last operation in flight ends; made only when someone waits.
        self._idle: asyncio.Event | None = None
        self._compensating = False

    @property
    def is_replaying(self) -> bool:
        """True while the body is re-running operations that are already recorded."""
        return self._next_seq <= self._last_recorded_seq

    # -- used by the runner ---------------------------------------------------------

    def interrupt(self, error: BaseException) -> None:
        """Make the next live operation raise ``error`` (the first interrupt wins,
        except that abandoning the run overrides everything)."""
        if self._interrupt is None or isinstance(error, _Abandon):
            self._interrupt = error

    @property
    def interruption(self) -> BaseException | None:
        """The pending interrupt, if any."""
        return self._interrupt

    # Package-internal (the runner and SyncContext), kept out of the public names of
    # Context that SyncContext mirrors.

    def _deliver_interruption(self) -> BaseException | None:
        """A fresh instance of the pending interrupt, to raise in the body (None when
        there is none); marks it as seen by the body."""
        return None if self._interrupt is None else self._delivered(self._interrupt)

    def _unseen_timeout(self) -> BaseException | None:
        """The deadline's timeout when no operation raised it in the body: a body that
        returns then did not finish by its deadline (it only replayed recorded
        operations, or computed), so the workflow times out. A body that saw the
        timeout raised and still returned made that choice itself."""
        if isinstance(self._interrupt, WorkflowTimeoutError) and not self._interrupt_delivered:
            return self._delivered(self._interrupt)
        return None

    async def wait_until_idle(self) -> None:
        """Wait until no operation started by the body is still in flight."""
        if self._in_flight:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()

    # -- internals ----------------------------------------------------------------

    def _take_seq(self, marker: int | None = None) -> int:
        """Take the next operation's seq, passing over patch markers (see
        :func:`~durably.replay.next_operation_seq`), or, given ``marker``, the seq of
        the patch marker recorded there (at or after the next one)."""
        if self._env.hooks is not None:
            self._env.hooks.operation_called(self)
        if marker is not None:
            seq = marker
        elif self._next_seq <= self._last_recorded_seq:  # replaying: markers to pass?
            seq = next_operation_seq(self._history, self._next_seq)
        else:  # past the history (running live): nothing recorded there
            seq = self._next_seq
        if seq == self._next_seq:  # no patch marker passed over (the common case)
            self.visited.add(seq)
        else:
            self.visited.update(range(self._next_seq, seq + 1))
        self._next_seq = seq + 1
        return seq

    async def _track(self, operation: Coroutine[Any, Any, T]) -> T:
        """Await ``operation``, counted as in flight (see :meth:`wait_until_idle`)."""
        self._in_flight += 1
        try:
            return await operation
        finally:
            self._operation_ended()

    def _operation_ended(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()  # wakes whoever waits; the next wait makes a new one
            self._idle = None

    def _replayed(self, seq: int, kind: OperationKind, name: str) -> OperationRecord | None:
        if seq > self._last_recorded_seq:  # past the history: running live
            record = None
        else:
            try:
                record = recorded_operation(
                    self._history, workflow_id=self.workflow_id, seq=seq, kind=kind, name=name
                )
            except NonDeterminismError as error:
                self.nondeterminism = self.nondeterminism or error
                raise
        if record is None and self._env.hooks is not None:
            self._env.hooks.running_live(self, kind, name, seq)
        return record

    def _raise_if_interrupted(self) -> None:
        if self._interrupt is not None and not (
            self._compensating and not isinstance(self._interrupt, _Abandon)
        ):
            raise self._delivered(self._interrupt)

    def _is_interrupt(self, error: BaseException) -> bool:
        """Whether ``error`` is this workflow's interrupt (a cancellation or its
        deadline) delivered to the running code, rather than a failure of that code."""
        return self._interrupt is not None and type(error) is type(self._interrupt)

    async def _interruptibly(self, waiting: Awaitable[T]) -> T:
        """Await ``waiting`` (a step, a timer, a notification); when this workflow's
        interrupt cancelled it, raise the interrupt (a cancellation, the deadline)
        instead of the CancelledError."""
        try:
            return await waiting
        except asyncio.CancelledError:
            converted = self._converted_cancellation()
            if converted is None:
                raise
            raise converted from None

    def _converted_cancellation(self) -> BaseException | None:
        """The error to raise instead of a CancelledError caused by an interrupt."""
        if self._interrupt is None:
            return None
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return self._delivered(self._interrupt)

    def _delivered(self, interrupt: BaseException) -> BaseException:
        self._interrupt_delivered = True
        return _fresh(interrupt)

    def _ends_after_deadline(self, moment: int) -> bool:
        """Whether a wait ending at ``moment`` had not ended by the workflow's deadline
        (replaying it past the deadline would be progress the deadline forbids)."""
        return self._deadline_at is not None and moment > self._deadline_at

    async def _fenced(self, write: Awaitable[T], what: str) -> T:
        """Await a fenced store write; a lost lease or a failed store abandons the run
        (nothing more is written; the workflow is recovered later)."""
        try:
            return await write
        except (LeaseLostError, StoreError) as error:
            raise self._abandoning(error, what) from error

    def _abandoning(self, error: LeaseLostError | StoreError, what: str) -> _Abandon:
        """What a fenced write that failed with ``error`` makes the run do: abandon."""
        if isinstance(error, LeaseLostError):
            return _Abandon(str(error))
        self._env.observers.emit("on_error", self.workflow_id, what, error)
        return _Abandon(f"store failed: {error}")

    def _finished_now(
        self,
        seq: int,
        kind: OperationKind,
        name: str,
        *,
        started_at: int | None = None,
        **fields: Any,
    ) -> OperationRecord:
        """A COMPLETED operation of this workflow, finished now (and started now unless
        ``started_at`` says otherwise)."""
        now = self._env.clock.now()
        return OperationRecord(
            workflow_id=self.workflow_id,
            seq=seq,
            kind=kind,
            name=name,
            status=OperationStatus.COMPLETED,
            started_at=now if started_at is None else started_at,
            finished_at=now,
            **fields,
        )

    async def _record(self, operation: OperationRecord) -> None:
        hooks = self._env.hooks
        if hooks is not None:
            hooks.recording(self, operation, written=False)
        try:  # as _fenced, written out: one coroutine less on the hot path
            await self._env.store.record_operation(self._fence, operation)
        except (LeaseLostError, StoreError) as error:
            raise self._abandoning(error, "record_operation") from error
        self._env.notifier.notify_progress(self.workflow_id)
        if hooks is not None:
            hooks.recording(self, operation, written=True)

    async def _wait_until(self, moment: int, reason: str) -> None:
        """Wait in memory if the wait is short, else unwind the workflow until then."""
        now = self._env.clock.now()
        if moment <= now:
            return
        if moment - now > self._env.inline_wait and not self._compensating:
            raise _Suspend(moment, f"{reason} until {micros_to_datetime(moment).isoformat()}")
        await self._interruptibly(self._env.clock.sleep_until(moment))

    def _describe(self, seq: int, name: str) -> str:
        return (
            f"the result of step {name!r} (operation #{seq}) of workflow "
            f"{self.workflow_name!r} (id {self.workflow_id!r})"
        )


def _fresh(error: BaseException) -> BaseException:
    """A new instance of an interrupt error, so tracebacks do not pile up on one object."""
    if isinstance(error, _Abandon):
        return _Abandon(error.reason)
    try:
        return type(error)(*error.args)
    except Exception:
        return error


def missing_error() -> ErrorInfo:
    """Stands in for a FAILED record whose error text is missing."""
    return ErrorInfo(type="StepError", message="the recorded error is missing")

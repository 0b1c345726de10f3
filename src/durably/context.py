"""The workflow context: every durable operation a workflow body can perform.

Each operation takes the next sequence number when it is *called* (not when it is
awaited), so operations started together with ``asyncio.gather`` are numbered in
call order. A recorded operation returns its recorded outcome without running; the
first unrecorded one runs live and is recorded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar, overload

from durably.codec import return_hint
from durably.corrupt_records import (
    CorruptHistory,
    decode_recorded_result,
    recorded_error,
    unreadable_operation,
)
from durably.environment import to_micros
from durably.error_records import error_to_info
from durably.errors import (
    CorruptRecordError,
    PayloadError,
)
from durably.events import PublishingOperations
from durably.identifiers import validate_identifier
from durably.map_operation import MapOperations
from durably.models import (
    AttemptRecord,
    OperationKind,
    OperationRecord,
    OperationStatus,
    micros_to_datetime,
)
from durably.observers import AttemptOutcome
from durably.registry import StepDefinition
from durably.replay import compensation_seq, patch_decision
from durably.retry import NO_RETRY, RetryPolicy
from durably.saga import Compensation
from durably.step_call import call_step_function, is_async_function
from durably.waits import DurableWaits

R = TypeVar("R")
T = TypeVar("T")

#: How an attempt ended, for the observers' attempt hooks.
_COMPLETED, _RETRYING, _FAILED, _INTERRUPTED = (
    AttemptOutcome.COMPLETED,
    AttemptOutcome.RETRYING,
    AttemptOutcome.FAILED,
    AttemptOutcome.INTERRUPTED,
)


class Context(DurableWaits, PublishingOperations, MapOperations):
    """What a workflow body uses to run durable operations.

    Passed as the first argument of every workflow. Not thread-safe; a ``def``
    workflow receives a :class:`~durably.sync_context.SyncContext` over this one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Set when a replayed record cannot be read back: the runner parks the workflow.
        self.corrupt_record: CorruptRecordError | None = None

    @overload
    def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        retry: RetryPolicy | None = ...,
        compensate: Callable[..., Any] | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def step(
        self,
        name: str,
        fn: Callable[..., R],
        /,
        *args: Any,
        retry: RetryPolicy | None = ...,
        compensate: Callable[..., Any] | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, R]: ...

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        retry: RetryPolicy | None = None,
        compensate: Callable[..., Any] | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, Any]:
        """Run ``fn(*args, **kwargs)`` as a durable step and return its result.

        The result is recorded once; on replay it is returned without running
        ``fn``. ``fn`` may be ``async def`` or plain ``def`` (run in a worker thread).

        Args:
            name: The step's name, recorded and checked on replay.
            fn: The function to run.
            retry: Retry policy (default: no retry).
            compensate: Called with the step's result if the workflow fails later.
            timeout: Fail the attempt when it runs longer (also for ``def`` steps).

        Returns:
            An awaitable of the step's result (decoded by ``fn``'s return annotation
            on replay, so it has the same type as on the first run).

        Raises:
            Exception: the step's error once its retries are exhausted.
            WorkflowCancelled: the workflow was cancelled.
        """
        seq, entry, timeout_micros = self._reserve_step(name, fn, compensate, timeout)
        return self._step(seq, name, fn, args, kwargs, retry, timeout_micros, entry)

    def _reserved_step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retry: RetryPolicy | None,
        compensate: Callable[..., Any] | None,
        timeout: timedelta | float | None,
    ) -> Callable[[], Coroutine[Any, Any, Any]]:
        """Number a step (and register its compensation) now; the returned function
        starts it. ``ctx.map`` numbers all its items at its call and starts them later."""
        seq, entry, timeout_micros = self._reserve_step(name, fn, compensate, timeout)
        return lambda: self._step(seq, name, fn, args, kwargs, retry, timeout_micros, entry)

    def _reserve_step(
        self,
        name: str,
        fn: Callable[..., Any],
        compensate: Callable[..., Any] | None,
        timeout: timedelta | float | None,
    ) -> tuple[int, Compensation | None, int | None]:
        """Check a step's name and function, take its seq and register its
        compensation; return the seq, the compensation and the timeout in microseconds."""
        validate_identifier(name, "step name")
        if not callable(fn):
            raise TypeError(f"step {name!r}: {fn!r} is not callable")
        seq = self._take_seq()
        entry = None
        if compensate is not None:
            entry = self.compensations.register(f"{name}:compensate", compensate, armed=False)
        return seq, entry, None if timeout is None else to_micros(timeout, "step timeout")

    def call_step(
        self, definition: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """Run a step declared with ``@app.step`` (what calling the decorated function does).

        Raises:
            TypeError: the step is a plain ``def``: an async workflow cannot block on it.
        """
        if not is_async_function(definition.fn):
            raise TypeError(
                f"step {definition.name!r} is a plain def called from an async workflow; "
                f"use `await ctx.step({definition.name!r}, {definition.fn.__name__}, ...)` "
                f"or make it async def"
            )
        return self.step(
            definition.name,
            definition.fn,
            *args,
            retry=definition.retry,
            timeout=definition.timeout,
            compensate=definition.compensate,
            **kwargs,
        )

    def on_failure(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Register a compensation: ``fn(*args)`` runs if the workflow fails later.

        Compensations run in reverse order of registration, each durably and with
        ``retry`` (default: exponential, 5 attempts).
        """
        label = validate_identifier(
            f"{getattr(fn, '__name__', 'compensation')}:compensate" if name is None else name,
            "compensation name",
        )
        self.compensations.register(label, fn, args=args, retry=retry, armed=True)

    def now(self) -> Coroutine[Any, Any, datetime]:
        """The current time, recorded: replay returns the same value."""
        return self._track(
            self._recorded_value(
                self._take_seq(),
                OperationKind.NOW,
                "now",
                lambda: micros_to_datetime(self._env.clock.now()),
                datetime,
            )
        )

    def random(self) -> Coroutine[Any, Any, float]:
        """A random float in [0, 1), recorded: replay returns the same value."""
        return self._track(
            self._recorded_value(
                self._take_seq(), OperationKind.RANDOM, "random", self._env.rng.random, float
            )
        )

    def uuid4(self) -> Coroutine[Any, Any, uuid.UUID]:
        """A random UUID, recorded: replay returns the same value."""
        return self._track(
            self._recorded_value(
                self._take_seq(), OperationKind.UUID, "uuid4", uuid.uuid4, uuid.UUID
            )
        )

    def patched(self, change_id: str) -> Coroutine[Any, Any, bool]:
        """Whether this workflow takes the new code path of the change ``change_id``.

        Guard a change to a workflow that has runs in flight::

            if await ctx.patched("tax-before-charge"):
                await ctx.step("tax", add_tax, order)   # new code
            await ctx.step("charge", charge, order)

        A run that reaches this point live records a marker and gets True; a replay
        gets True where that marker is recorded, and False where the history holds
        another operation at this point (it was recorded by the old code, which must
        go on replaying the old path: nothing is taken from the history then). Once no
        workflow started before the change is running, delete the ``if`` and the old
        branch: recorded markers that the code no longer asks about are passed over.

        Args:
            change_id: Names the change; unique among the changes of this workflow.

        Returns:
            An awaitable of True (new path) or False (old path).

        Raises:
            WorkflowCancelled: the workflow was cancelled (when the marker is written).
        """
        validate_identifier(change_id, "patch change_id")
        answer, seq = patch_decision(
            self._history,
            seq=self._next_seq,
            change_id=change_id,
            last_recorded_seq=self._last_recorded_seq,
        )
        if answer == "old_path":
            return self._answer(False)
        if answer == "recorded":
            self._take_seq(marker=seq)
            return self._answer(True)
        return self._track(self._record_patch(self._take_seq(), change_id))

    # -- used by the runner ---------------------------------------------------------

    async def run_compensation(self, entry: Compensation) -> None:
        """Run one compensation as a durable operation (skipped if already recorded)."""
        self._compensating = True
        seq = compensation_seq(entry.index)
        recorded = self._replayed(seq, OperationKind.COMPENSATION, entry.name)
        if recorded is not None:
            if recorded.status is OperationStatus.FAILED:
                raise self._replayed_error(recorded)
            return
        await self._run_attempts(
            seq=seq,
            kind=OperationKind.COMPENSATION,
            name=entry.name,
            fn=entry.fn,
            args=entry.args,
            kwargs={},
            retry=entry.retry or self._env.compensation_retry,
            timeout=None,
            hint=Any,
        )

    # -- internals ----------------------------------------------------------------

    async def _step(
        self,
        seq: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
        timeout: int | None,
        entry: Compensation | None,
    ) -> Any:
        # In flight from its start to its end, as :meth:`_track` counts other
        # operations (written out here: one coroutine less on the hot path).
        self._in_flight += 1
        try:
            hint = return_hint(fn)
            recorded = self._replayed(seq, OperationKind.STEP, name)
            if recorded is not None:
                if recorded.status is OperationStatus.FAILED:
                    raise self._replayed_error(recorded)
                value = self._replayed_result(recorded, hint, self._describe(seq, name))
            else:
                if self._interrupt is not None:
                    self._raise_if_interrupted()
                # By position: matching these nine keywords and call_step_function's
                # three cost 1.4% of a sequential step and 2.2% of a concurrent one
                # (python -m bench.instructions, MemoryStore).
                value = await self._run_attempts(
                    seq, OperationKind.STEP, name, fn, args, kwargs, retry, timeout, hint
                )
            if entry is not None:
                entry.args = (value,)
                entry.armed = True
            return value
        finally:
            self._operation_ended()

    async def _run_attempts(
        self,
        seq: int,
        kind: OperationKind,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
        timeout: int | None,
        hint: object,
    ) -> Any:
        env = self._env
        policy = retry or NO_RETRY
        previous = self._history.attempts.get(seq, [])
        attempt = previous[-1].attempt + 1 if previous else 1
        first_started = previous[0].started_at if previous else None
        if previous and previous[-1].next_attempt_at is not None:
            await self._wait_until(previous[-1].next_attempt_at, f"retry of {name!r}")
        observers = env.observers
        observing = bool(observers)  # tested once: no observer is the hot path
        while True:
            if self._interrupt is not None:
                self._raise_if_interrupted()
            started = env.clock.now()
            if first_started is None:
                first_started = started
            observed = None
            if observing:
                if kind is OperationKind.STEP:
                    observers.emit("on_step_start", self.workflow_id, name, seq)
                observed = observers.step_attempt_started(
                    self.workflow_id, self.workflow_name, kind, name, seq, attempt, started
                )
            try:
                try:  # what _interruptibly does, written out: one coroutine less
                    value = await call_step_function(
                        fn, args, kwargs, (self.workflow_id, seq, name, attempt), env.clock, timeout
                    )
                except asyncio.CancelledError:
                    converted = self._converted_cancellation()
                    if converted is None:
                        raise
                    raise converted from None
            except Exception as error:
                finished = env.clock.now()
                # The workflow's cancellation or deadline stopping the step is not the
                # step failing: no retry (and no backoff) for it.
                if not self._is_interrupt(error) and policy.should_retry(attempt, error):
                    env.observers.step_attempt_ended(observed, _RETRYING, finished, error)
                    next_at = finished + policy.delay_after(attempt, env.rng.random())
                    await self._record_attempt(
                        AttemptRecord(
                            workflow_id=self.workflow_id,
                            seq=seq,
                            attempt=attempt,
                            error=error_to_info(error, env.error_formatter).to_json(),
                            started_at=started,
                            finished_at=finished,
                            next_attempt_at=next_at,
                        )
                    )
                    env.observers.emit("on_step_retry", self.workflow_id, name, attempt, error)
                    await self._wait_until(next_at, f"retry of {name!r}")
                    attempt += 1
                    continue
                env.observers.step_attempt_ended(observed, _FAILED, finished, error)
                await self._record_failure(seq, kind, name, error, attempt, first_started)
                raise
            except BaseException as error:
                env.observers.step_attempt_ended(observed, _INTERRUPTED, env.clock.now(), error)
                raise
            try:
                encoded = env.codec.encode(value, hint, what=lambda: self._describe(seq, name))
            except PayloadError as error:
                env.observers.step_attempt_ended(observed, _FAILED, env.clock.now(), error)
                await self._record_failure(seq, kind, name, error, attempt, first_started)
                raise
            finished = env.clock.now()
            if observed is not None:
                observers.step_attempt_ended(observed, _COMPLETED, finished)
            await self._record(
                OperationRecord(
                    workflow_id=self.workflow_id,
                    seq=seq,
                    kind=kind,
                    name=name,
                    status=OperationStatus.COMPLETED,
                    result=encoded,
                    serializer=env.codec.serializer_name,
                    attempts=attempt,
                    started_at=first_started,
                    finished_at=finished,
                )
            )
            if observing and kind is OperationKind.STEP:
                observers.emit(
                    "on_step_complete",
                    self.workflow_id,
                    name,
                    seq,
                    timedelta(microseconds=finished - started),
                )
            return value

    async def _record_failure(
        self,
        seq: int,
        kind: OperationKind,
        name: str,
        error: BaseException,
        attempt: int,
        started: int,
    ) -> None:
        await self._record(
            OperationRecord(
                workflow_id=self.workflow_id,
                seq=seq,
                kind=kind,
                name=name,
                status=OperationStatus.FAILED,
                error=error_to_info(error, self._env.error_formatter).to_json(),
                attempts=attempt,
                started_at=started,
                finished_at=self._env.clock.now(),
            )
        )

    async def _record_attempt(self, attempt: AttemptRecord) -> None:
        await self._fenced(self._env.store.record_attempt(self._fence, attempt), "record_attempt")

    async def _answer(self, value: bool) -> bool:
        return value

    async def _record_patch(self, seq: int, change_id: str) -> bool:
        self._raise_if_interrupted()
        await self._record(self._finished_now(seq, OperationKind.PATCH, change_id))
        return True

    async def _recorded_value(
        self, seq: int, kind: OperationKind, name: str, produce: Callable[[], T], hint: type[T]
    ) -> T:
        codec = self._env.codec
        recorded = self._replayed(seq, kind, name)
        if recorded is not None:
            value = self._replayed_result(recorded, hint, name)
            if not isinstance(value, hint):
                self._stop_on_corrupt_record(
                    recorded, f"{name} recorded {type(value).__name__}, not {hint.__name__}"
                )
            return value
        self._raise_if_interrupted()
        value = produce()
        encoded = codec.encode(value, hint, what=name)
        await self._record(
            self._finished_now(seq, kind, name, result=encoded, serializer=codec.serializer_name)
        )
        return value

    def _replayed_result(self, recorded: OperationRecord, hint: object, what: str) -> Any:
        """The recorded result, decoded; a corrupt one stops the run (it is parked)."""
        try:
            return decode_recorded_result(
                self._env.codec, recorded, hint, workflow_id=self.workflow_id, what=what
            )
        except CorruptRecordError as error:
            self.corrupt_record = self.corrupt_record or error
            raise CorruptHistory(error) from None

    def _replayed_error(self, recorded: OperationRecord) -> Exception:
        """The recorded error, rebuilt; an unreadable one stops the run (it is parked)."""
        try:
            return recorded_error(recorded, workflow_id=self.workflow_id)
        except CorruptRecordError as error:
            self.corrupt_record = self.corrupt_record or error
            raise CorruptHistory(error) from None

    def _stop_on_corrupt_record(self, recorded: OperationRecord, cause: str) -> NoReturn:
        error = unreadable_operation(self.workflow_id, recorded, cause)
        self.corrupt_record = self.corrupt_record or error
        raise CorruptHistory(error)

"""The workflow context: every durable operation a workflow body can perform.

Each operation takes the next sequence number when it is *called* (not when it is
awaited), so operations started together with ``asyncio.gather`` are numbered in
call order. A recorded operation returns its recorded outcome without running; the
first unrecorded one runs live and is recorded.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from durably.codec import return_hint
from durably.environment import RunEnvironment, to_micros
from durably.error_records import error_to_info, rebuild_error
from durably.errors import (
    LeaseLostError,
    NonDeterminismError,
    PayloadError,
    StoreError,
    _Abandon,
    _Suspend,
)
from durably.identifiers import validate_identifier
from durably.models import (
    AttemptRecord,
    ErrorInfo,
    Fence,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
    micros_to_datetime,
)
from durably.registry import StepDefinition
from durably.replay import compensation_seq, recorded_operation
from durably.retry import RetryPolicy
from durably.saga import Compensation, CompensationStack
from durably.step_call import StepInfo, call_step_function

R = TypeVar("R")
T = TypeVar("T")


class Context:
    """What a workflow body uses to run durable operations.

    Passed as the first argument of every workflow. Not thread-safe; a ``def``
    workflow receives a :class:`~durably.sync.SyncContext` over this one.
    """

    def __init__(
        self,
        env: RunEnvironment,
        *,
        workflow_id: str,
        workflow_name: str,
        fence: Fence,
        history: History,
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
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._compensating = False

    # -- public API ---------------------------------------------------------------

    @property
    def is_replaying(self) -> bool:
        """True while the body is re-running operations that are already recorded."""
        return self._next_seq <= self._last_recorded_seq

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
        validate_identifier(name, "step name")
        if not callable(fn):
            raise TypeError(f"step {name!r}: {fn!r} is not callable")
        seq = self._take_seq()
        entry = None
        if compensate is not None:
            entry = self.compensations.register(f"{name}:compensate", compensate, armed=False)
        timeout_micros = None if timeout is None else to_micros(timeout)
        return self._track(self._step(seq, name, fn, args, kwargs, retry, timeout_micros, entry))

    def call_step(
        self, definition: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """Run a step declared with ``@app.step`` (what calling the decorated function does).

        Raises:
            TypeError: the step is a plain ``def``: an async workflow cannot block on it.
        """
        if not inspect.iscoroutinefunction(definition.fn):
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
            name or f"{getattr(fn, '__name__', 'compensation')}:compensate", "compensation name"
        )
        self.compensations.register(label, fn, args=args, retry=retry, armed=True)

    def sleep(self, name: str, duration: timedelta | float) -> Coroutine[Any, Any, None]:
        """Sleep durably: the wake-up time is recorded once and never extended by replay.

        A long sleep unwinds the workflow (it holds no memory) and the timer re-runs
        it by replay.
        """
        validate_identifier(name, "sleep name")
        micros = to_micros(duration)
        return self._track(self._sleep(self._take_seq(), name, micros))

    @overload
    def wait_signal(
        self, name: str, *, timeout: timedelta | float | None = ...
    ) -> Coroutine[Any, Any, Any]: ...

    @overload
    def wait_signal(
        self, name: str, *, timeout: timedelta | float | None = ..., payload_type: type[T]
    ) -> Coroutine[Any, Any, T | None]: ...

    def wait_signal(
        self,
        name: str,
        *,
        timeout: timedelta | float | None = None,
        payload_type: object = Any,
    ) -> Coroutine[Any, Any, Any]:
        """Wait for the oldest unconsumed signal ``name`` sent to this workflow.

        Signals sent before the wait are kept (FIFO per name). The timeout is durable.

        Args:
            name: The signal's name.
            timeout: Give up after this long; the deadline survives restarts.
            payload_type: The payload's type, used to decode it (e.g. a dataclass).

        Returns:
            The signal's payload, or None on timeout.
        """
        validate_identifier(name, "signal name")
        micros = None if timeout is None else to_micros(timeout)
        return self._track(self._wait_signal(self._take_seq(), name, micros, payload_type))

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

    async def wait_until_idle(self) -> None:
        """Wait until no operation started by the body is still in flight."""
        await self._idle.wait()

    async def run_compensation(self, entry: Compensation) -> None:
        """Run one compensation as a durable operation (skipped if already recorded)."""
        self._compensating = True
        seq = compensation_seq(entry.index)
        recorded = self._replayed(seq, OperationKind.COMPENSATION, entry.name)
        if recorded is not None:
            if recorded.status is OperationStatus.FAILED:
                raise rebuild_error(recorded.error_info or _unknown_error())
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

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self.visited.add(seq)
        return seq

    async def _track(self, operation: Coroutine[Any, Any, T]) -> T:
        self._in_flight += 1
        self._idle.clear()
        try:
            return await operation
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _replayed(self, seq: int, kind: OperationKind, name: str) -> OperationRecord | None:
        try:
            return recorded_operation(
                self._history, workflow_id=self.workflow_id, seq=seq, kind=kind, name=name
            )
        except NonDeterminismError as error:
            self.nondeterminism = self.nondeterminism or error
            raise

    def _raise_if_interrupted(self) -> None:
        if self._interrupt is not None and not (
            self._compensating and not isinstance(self._interrupt, _Abandon)
        ):
            raise _fresh(self._interrupt)

    def _converted_cancellation(self) -> BaseException | None:
        """The error to raise instead of a CancelledError caused by an interrupt."""
        if self._interrupt is None:
            return None
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return _fresh(self._interrupt)

    async def _fenced(self, write: Awaitable[T], what: str) -> T:
        """Await a fenced store write; a lost lease or a failed store abandons the run
        (nothing more is written; the workflow is recovered later)."""
        try:
            return await write
        except LeaseLostError as error:
            raise _Abandon(str(error)) from error
        except StoreError as error:
            self._env.observers.emit("on_error", self.workflow_id, what, error)
            raise _Abandon(f"store failed: {error}") from error

    async def _record(self, operation: OperationRecord) -> None:
        await self._fenced(
            self._env.store.record_operation(self._fence, operation), "record_operation"
        )
        self._env.notifier.notify(self.workflow_id)

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
        hint = return_hint(fn)
        recorded = self._replayed(seq, OperationKind.STEP, name)
        if recorded is not None:
            if recorded.status is OperationStatus.FAILED:
                raise rebuild_error(recorded.error_info or _unknown_error())
            value = self._env.codec.decode(
                recorded.result, recorded.serializer, hint, what=self._describe(seq, name)
            )
        else:
            self._raise_if_interrupted()
            value = await self._run_attempts(
                seq=seq,
                kind=OperationKind.STEP,
                name=name,
                fn=fn,
                args=args,
                kwargs=kwargs,
                retry=retry,
                timeout=timeout,
                hint=hint,
            )
        if entry is not None:
            entry.args = (value,)
            entry.armed = True
        return value

    async def _run_attempts(
        self,
        *,
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
        policy = retry or RetryPolicy.none()
        previous = self._history.attempts.get(seq, [])
        attempt = previous[-1].attempt + 1 if previous else 1
        first_started = previous[0].started_at if previous else env.clock.now()
        if previous and previous[-1].next_attempt_at is not None:
            await self._wait_until(previous[-1].next_attempt_at, f"retry of {name!r}")
        while True:
            self._raise_if_interrupted()
            started = env.clock.now()
            if kind is OperationKind.STEP:
                env.observers.emit("on_step_start", self.workflow_id, name, seq)
            try:
                value = await self._call(fn, args, kwargs, timeout, seq, name, attempt)
            except Exception as error:
                finished = env.clock.now()
                if policy.should_retry(attempt, error):
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
                await self._record_failure(seq, kind, name, error, attempt, first_started)
                raise
            try:
                encoded = env.codec.encode(value, hint, what=self._describe(seq, name))
            except PayloadError as error:
                await self._record_failure(seq, kind, name, error, attempt, first_started)
                raise
            finished = env.clock.now()
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
            if kind is OperationKind.STEP:
                env.observers.emit(
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

    async def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: int | None,
        seq: int,
        name: str,
        attempt: int,
    ) -> Any:
        info = StepInfo(workflow_id=self.workflow_id, seq=seq, name=name, attempt=attempt)
        try:
            return await call_step_function(
                fn, args, kwargs, info=info, clock=self._env.clock, timeout=timeout
            )
        except asyncio.CancelledError:
            converted = self._converted_cancellation()
            if converted is None:
                raise
            raise converted from None

    async def _wait_until(self, moment: int, reason: str) -> None:
        """Wait in memory if the wait is short, else unwind the workflow until then."""
        now = self._env.clock.now()
        if moment <= now:
            return
        if moment - now > self._env.inline_wait and not self._compensating:
            raise _Suspend(moment, f"{reason} until {micros_to_datetime(moment).isoformat()}")
        try:
            await self._env.clock.sleep_until(moment)
        except asyncio.CancelledError:
            converted = self._converted_cancellation()
            if converted is None:
                raise
            raise converted from None

    async def _sleep(self, seq: int, name: str, duration: int) -> None:
        recorded = self._replayed(seq, OperationKind.SLEEP, name)
        if recorded is None:
            self._raise_if_interrupted()
            now = self._env.clock.now()
            wake_at = now + duration
            await self._record(
                OperationRecord(
                    workflow_id=self.workflow_id,
                    seq=seq,
                    kind=OperationKind.SLEEP,
                    name=name,
                    status=OperationStatus.WAITING,
                    started_at=now,
                    wake_at=wake_at,
                )
            )
        else:
            wake_at = recorded.wake_at or recorded.started_at
            if wake_at <= self._env.clock.now():
                return
            self._raise_if_interrupted()
        await self._wait_until(wake_at, f"sleep {name!r}")

    async def _wait_signal(
        self, seq: int, name: str, timeout: int | None, payload_type: object
    ) -> Any:
        env = self._env
        what = f"signal {name!r} sent to workflow {self.workflow_id!r}"
        recorded = self._replayed(seq, OperationKind.SIGNAL, name)
        if recorded is not None and recorded.status is OperationStatus.COMPLETED:
            return env.codec.decode(recorded.result, recorded.serializer, payload_type, what=what)
        self._raise_if_interrupted()
        if recorded is not None:
            started, deadline = recorded.started_at, recorded.wake_at
        else:
            started = env.clock.now()
            deadline = None if timeout is None else started + timeout
            if deadline is not None:
                await self._record(
                    OperationRecord(
                        workflow_id=self.workflow_id,
                        seq=seq,
                        kind=OperationKind.SIGNAL,
                        name=name,
                        status=OperationStatus.WAITING,
                        started_at=started,
                        wake_at=deadline,
                    )
                )
        inline_until = env.clock.now() + env.inline_wait
        with env.notifier.watching(self.workflow_id):
            while True:
                seen = env.notifier.generation(self.workflow_id)
                now = env.clock.now()
                consumed = await self._consume(seq, name, started, deadline, now)
                if consumed is not None:
                    return env.codec.decode(consumed[0], consumed[1], payload_type, what=what)
                if deadline is not None and now >= deadline:
                    await self._record(
                        OperationRecord(
                            workflow_id=self.workflow_id,
                            seq=seq,
                            kind=OperationKind.SIGNAL,
                            name=name,
                            status=OperationStatus.COMPLETED,
                            started_at=started,
                            finished_at=now,
                            wake_at=deadline,
                        )
                    )
                    return None
                if now >= inline_until:
                    raise _Suspend(deadline, f"waiting for signal {name!r}", signal=name)
                until = min(inline_until, now + env.poll_interval)
                if deadline is not None:
                    until = min(until, deadline)
                try:
                    await env.notifier.wait(self.workflow_id, until, since=seen)
                except asyncio.CancelledError:
                    converted = self._converted_cancellation()
                    if converted is None:
                        raise
                    raise converted from None
                self._raise_if_interrupted()

    async def _consume(
        self, seq: int, name: str, started: int, deadline: int | None, now: int
    ) -> tuple[str | None, str] | None:
        template = OperationRecord(
            workflow_id=self.workflow_id,
            seq=seq,
            kind=OperationKind.SIGNAL,
            name=name,
            status=OperationStatus.COMPLETED,
            started_at=started,
            finished_at=now,
            wake_at=deadline,
        )
        signal = await self._fenced(
            self._env.store.consume_signal(self._fence, template), "consume_signal"
        )
        return None if signal is None else (signal.payload, signal.serializer)

    async def _recorded_value(
        self, seq: int, kind: OperationKind, name: str, produce: Callable[[], T], hint: type[T]
    ) -> T:
        codec = self._env.codec
        recorded = self._replayed(seq, kind, name)
        if recorded is not None:
            value = codec.decode(recorded.result, recorded.serializer, hint, what=name)
            assert isinstance(value, hint)
            return value
        self._raise_if_interrupted()
        value = produce()
        now = self._env.clock.now()
        await self._record(
            OperationRecord(
                workflow_id=self.workflow_id,
                seq=seq,
                kind=kind,
                name=name,
                status=OperationStatus.COMPLETED,
                result=codec.encode(value, hint, what=name),
                serializer=codec.serializer_name,
                started_at=now,
                finished_at=now,
            )
        )
        return value

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


def _unknown_error() -> ErrorInfo:
    return ErrorInfo(type="StepError", message="the recorded error is missing")

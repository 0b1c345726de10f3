"""Durable waits: sleeps and signal waits, replay-safe, unwinding when long."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar, overload

from durably.context_core import ContextCore
from durably.environment import to_micros
from durably.errors import (
    _Suspend,
)
from durably.identifiers import validate_identifier, validate_signal_name
from durably.models import (
    OperationKind,
    OperationRecord,
    OperationStatus,
)

T = TypeVar("T")


class DurableWaits(ContextCore):
    """Sleeping and waiting for signals."""

    def sleep(self, name: str, duration: timedelta | float) -> Coroutine[Any, Any, None]:
        """Sleep durably: the wake-up time is recorded once and never extended by replay.

        A long sleep unwinds the workflow (it holds no memory) and the timer re-runs
        it by replay.
        """
        validate_identifier(name, "sleep name")
        micros = to_micros(duration, "sleep duration")
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
        validate_signal_name(name)
        micros = None if timeout is None else to_micros(timeout, "wait_signal timeout")
        return self._track(self._wait_signal(self._take_seq(), name, micros, payload_type))

    async def _sleep(self, seq: int, name: str, duration: int) -> None:
        recorded = self._replayed(seq, OperationKind.SLEEP, name)
        if recorded is not None and recorded.status is OperationStatus.COMPLETED:
            return
        if recorded is None:
            self._raise_if_interrupted()
            started = self._env.clock.now()
            wake_at = started + duration
            await self._record(
                OperationRecord(
                    workflow_id=self.workflow_id,
                    seq=seq,
                    kind=OperationKind.SLEEP,
                    name=name,
                    status=OperationStatus.WAITING,
                    started_at=started,
                    wake_at=wake_at,
                )
            )
        else:
            started, wake_at = recorded.started_at, recorded.wake_at or recorded.started_at
            if wake_at > self._env.clock.now() or self._ends_after_deadline(wake_at):
                self._raise_if_interrupted()
        await self._wait_until(wake_at, f"sleep {name!r}")
        await self._complete_sleep(seq, name, started, wake_at)

    async def _complete_sleep(self, seq: int, name: str, started: int, wake_at: int) -> None:
        """Record the ended sleep COMPLETED (it was WAITING), once: a replay that finds it
        so writes nothing. Skipped when the run is being stopped: the next run does it."""
        if self._interrupt is not None:
            return
        await self._record(
            self._finished_now(seq, OperationKind.SLEEP, name, started_at=started, wake_at=wake_at)
        )

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
                await self._interruptibly(env.notifier.wait(self.workflow_id, until, since=seen))
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

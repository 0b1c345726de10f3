"""Observer hooks: callbacks for monitoring, every one of them actually called.

Subclass :class:`Observer` and override what you need; pass instances as
``Durably(observers=[...])``. An observer that raises is logged and ignored: it can
never change the outcome of a workflow.

Two families of hooks exist. The first ones (``on_workflow_start``, ``on_step_start``...)
take plain arguments. The run and attempt hooks (``on_workflow_run_start/end``,
``on_step_attempt_start/end``) take frozen records (:class:`RunInfo`,
:class:`AttemptInfo` and their ends), so that fields can be added later without
breaking observers; every start of these is matched by exactly one end, which is what
tracing needs (:mod:`durably.observability`). Hooks are called on the event loop, in
the task of the run or operation they describe. Steps replayed from history run no
attempt, so they call no step hook.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from durably.errors import WorkflowCancelled, WorkflowTimeoutError
from durably.models import OperationKind, WorkflowStatus

logger = logging.getLogger("durably.observers")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """One run of a workflow by one executor: from its claim to its end.

    A workflow that suspends, or whose process dies, has several runs; each replays
    the recorded operations and continues live.
    """

    workflow_id: str
    workflow_name: str
    #: The version of the workflow's code running it.
    version: str
    #: The executor (process) running it.
    executor_id: str
    #: A previous run did not end (the workflow is being recovered).
    recovered: bool
    #: When the run started (UTC epoch microseconds, on the app's clock).
    started_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnd:
    """How a run ended."""

    #: The status written: a final status, ``PARKED`` or ``SUSPENDED``; None when the
    #: run was abandoned (lease lost, store failure, app closing): nothing was written
    #: and a later run resumes the workflow.
    status: WorkflowStatus | None
    #: The workflow's error (failed, parked...) or why the run was abandoned.
    error: BaseException | None
    #: When the run ended (UTC epoch microseconds, on the app's clock).
    finished_at: int

    @property
    def outcome(self) -> str:
        """The status in lower case (``"completed"``, ``"suspended"``...) or
        ``"abandoned"``."""
        return "abandoned" if self.status is None else self.status.value.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptInfo:
    """One live attempt of a step or a compensation (never a replayed one)."""

    workflow_id: str
    workflow_name: str
    #: ``OperationKind.STEP`` or ``OperationKind.COMPENSATION``.
    kind: OperationKind
    step_name: str
    #: The operation's sequence number in the workflow (negative for compensations).
    seq: int
    #: 1-based, durable: a retry after a recovery continues the count.
    attempt: int
    #: When the attempt started (UTC epoch microseconds, on the app's clock).
    started_at: int

    @property
    def idempotency_key(self) -> str:
        """The step's idempotency key (the same for every attempt)."""
        return f"{self.workflow_id}:{self.seq}"


class AttemptOutcome(StrEnum):
    """How one attempt of a step ended."""

    #: It returned and its result was encoded; the checkpoint write follows.
    COMPLETED = "completed"
    #: It raised and the step will be tried again after its retry delay.
    RETRYING = "retrying"
    #: It raised and the step failed (no retry left, or not retryable).
    FAILED = "failed"
    #: It was stopped from outside: cancellation, the workflow's deadline, the app
    #: closing or a lost lease. A later run may run the step again.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptEnd:
    """How an attempt ended."""

    outcome: AttemptOutcome
    #: What the attempt raised (None when it completed).
    error: BaseException | None
    #: When it ended (UTC epoch microseconds, on the app's clock).
    finished_at: int


class Observer:
    """No-op base class for observers."""

    def on_workflow_start(self, workflow_id: str, workflow_name: str) -> None:
        """A run of the workflow begins (first run, resumption or recovery)."""

    def on_workflow_finish(self, workflow_id: str, status: WorkflowStatus) -> None:
        """The workflow reached a terminal status (or was parked)."""

    def on_step_start(self, workflow_id: str, step_name: str, seq: int) -> None:
        """A step is about to run live (not replayed)."""

    def on_step_complete(
        self, workflow_id: str, step_name: str, seq: int, elapsed: timedelta
    ) -> None:
        """A step's result was recorded."""

    def on_step_retry(
        self, workflow_id: str, step_name: str, attempt: int, error: BaseException
    ) -> None:
        """Attempt ``attempt`` of a step failed and will be retried."""

    def on_compensation_start(self, workflow_id: str, names: list[str]) -> None:
        """Compensations are about to run, in the order given."""

    def on_recovery_start(self, workflow_id: str) -> None:
        """A workflow whose previous run did not end is being recovered."""

    def on_recovery_complete(self, workflow_id: str, succeeded: bool) -> None:
        """A recovered run ended. ``succeeded``: it completed the workflow, or brought
        it back to a durable wait (``SUSPENDED``, whose wake-ups are ordinary runs);
        False when the run failed, compensated, was cancelled or parked."""

    def on_error(self, workflow_id: str, context: str, error: BaseException) -> None:
        """An error durably handled internally (a store failure, a lost lease...)."""

    def on_workflow_run_start(self, run: RunInfo) -> None:
        """A run of a workflow begins; :meth:`on_workflow_run_end` follows once."""

    def on_workflow_run_end(self, run: RunInfo, end: RunEnd) -> None:
        """A run ended: finished, suspended, parked or abandoned."""

    def on_step_attempt_start(self, attempt: AttemptInfo) -> None:
        """An attempt of a step or compensation runs live; :meth:`on_step_attempt_end`
        follows once."""

    def on_step_attempt_end(self, attempt: AttemptInfo, end: AttemptEnd) -> None:
        """The attempt ended (completed, will be retried, failed or was interrupted)."""


class ObserverSet:
    """Calls every observer, isolating their failures."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def emit(self, hook: str, *args: object) -> None:
        """Call ``hook`` on every observer; log and swallow what they raise."""
        for observer in self._observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:
                logger.exception("observer %r failed in %s", observer, hook)

    def workflow_run_started(
        self,
        *,
        workflow_id: str,
        workflow_name: str,
        version: str,
        executor_id: str,
        recovered: bool,
        started_at: int,
    ) -> RunInfo | None:
        """Emit ``on_workflow_run_start``; returns the record to end the run with
        (None when there is no observer, so that nothing is built on the hot path)."""
        if not self._observers:
            return None
        run = RunInfo(
            workflow_id=workflow_id,
            workflow_name=workflow_name,
            version=version,
            executor_id=executor_id,
            recovered=recovered,
            started_at=started_at,
        )
        self.emit("on_workflow_run_start", run)
        return run

    def workflow_run_ended(
        self,
        run: RunInfo | None,
        status: WorkflowStatus | None,
        finished_at: int,
        error: BaseException | None = None,
    ) -> None:
        """Emit ``on_workflow_run_end`` for a run started by :meth:`workflow_run_started`."""
        if run is not None:
            end = RunEnd(status=status, error=error, finished_at=finished_at)
            self.emit("on_workflow_run_end", run, end)

    def step_attempt_started(
        self,
        workflow_id: str,
        workflow_name: str,
        kind: OperationKind,
        step_name: str,
        seq: int,
        attempt: int,
        started_at: int,
    ) -> AttemptInfo | None:
        """Emit ``on_step_attempt_start``; returns the record to end the attempt with
        (None when there is no observer)."""
        if not self._observers:
            return None
        info = AttemptInfo(
            workflow_id=workflow_id,
            workflow_name=workflow_name,
            kind=kind,
            step_name=step_name,
            seq=seq,
            attempt=attempt,
            started_at=started_at,
        )
        self.emit("on_step_attempt_start", info)
        return info

    def step_attempt_ended(
        self,
        attempt: AttemptInfo | None,
        outcome: AttemptOutcome,
        finished_at: int,
        error: BaseException | None = None,
    ) -> None:
        """Emit ``on_step_attempt_end`` for an attempt started by
        :meth:`step_attempt_started`. An attempt stopped by the workflow's
        cancellation or deadline is reported as interrupted, whatever the engine does
        next with the error."""
        if attempt is not None:
            if isinstance(error, WorkflowCancelled | WorkflowTimeoutError):
                outcome = AttemptOutcome.INTERRUPTED
            end = AttemptEnd(outcome=outcome, error=error, finished_at=finished_at)
            self.emit("on_step_attempt_end", attempt, end)

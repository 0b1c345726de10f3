"""Errors raised by durably.

Every error a user can catch derives from :class:`DurablyError`; a class's docstring is
its default message. Internal control flow that user code must never swallow derives
from :class:`BaseException` instead (see :class:`_ControlFlow`).

::

    DurablyError
    ├── ConfigurationError            bad setting, missing extra, unsupported URL
    ├── StoreError                    the database failed; the driver error is __cause__
    │   ├── SchemaVersionError        the database was written by a newer durably
    │   └── CorruptRecordError        a stored row cannot be decoded
    ├── PayloadError                  a value cannot be encoded or decoded
    │   └── PayloadTooLargeError      an encoded payload exceeds the configured limit
    ├── WorkflowNotFoundError         no workflow with that id
    ├── WorkflowConflictError         same id, different workflow name or input
    ├── WorkflowNotRegisteredError    no workflow of that name in this app
    ├── WorkflowFinishedError         the workflow already ended; the action needs a live one
    ├── WorkflowFailedError           awaiting a result of a workflow that did not complete
    ├── NonDeterminismError           replay met a different operation than recorded
    ├── WorkflowCancelled             raised inside a workflow at its next durable operation
    ├── WorkflowTimeoutError          the workflow's deadline passed
    ├── StepError                     a recorded step error whose type cannot be rebuilt
    ├── StepTimeoutError              a step ran past its timeout
    ├── CompensationError             a compensation failed after its retries
    ├── MapFailedError                ctx.map stopped: too many of its items failed
    ├── LeaseLostError                this executor no longer owns the workflow (fenced)
    └── AppClosedError                the app is not open, or was closed
"""

from __future__ import annotations

from typing import Any


class DurablyError(Exception):
    """A durably error."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.context = context
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())


class ConfigurationError(DurablyError):
    """durably is configured wrongly; the message says which setting to change."""


class StoreError(DurablyError):
    """The workflow store failed; the database driver's error is attached as __cause__."""


class SchemaVersionError(StoreError):
    """The database schema is newer than this version of durably; upgrade durably."""


class CorruptRecordError(StoreError):
    """A stored record cannot be read; the workflow is left untouched for an operator."""


class PayloadError(DurablyError):
    """A value cannot be encoded for storage, or a stored payload cannot be decoded."""


class PayloadTooLargeError(PayloadError):
    """An encoded payload is larger than the configured limit (``max_payload_bytes``)."""


class WorkflowNotFoundError(DurablyError):
    """No workflow with this id exists in the store."""


class WorkflowConflictError(DurablyError):
    """A workflow with this id already exists with a different workflow name or input."""


class WorkflowNotRegisteredError(DurablyError):
    """No workflow of this name is registered in this app; decorate it with @app.workflow()."""


class WorkflowFinishedError(DurablyError):
    """The workflow has already finished; this action needs a workflow that is still live."""


class InvalidTransitionError(DurablyError):
    """The workflow's status does not allow this action; the message says what does."""


class WorkflowFailedError(DurablyError):
    """The workflow did not complete; its status and recorded error are attached."""

    def __init__(
        self,
        message: str | None = None,
        *,
        workflow_id: str = "",
        status: str = "",
        error_type: str | None = None,
        error_message: str | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class NonDeterminismError(DurablyError):
    """Replay met a different operation than the one recorded at this position."""


class WorkflowCancelled(DurablyError):
    """The workflow was cancelled; raised at its next durable operation."""


class WorkflowTimeoutError(DurablyError):
    """The workflow's deadline passed before it finished."""


class StepError(DurablyError):
    """A step failed with an error whose type cannot be rebuilt safely on replay."""

    def __init__(
        self,
        message: str | None = None,
        *,
        error_type: str = "",
        traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback


class StepTimeoutError(DurablyError):
    """A step ran longer than its timeout and was failed at the deadline."""


class CompensationError(DurablyError):
    """A compensation still failed after its retries; the workflow is COMPENSATION_FAILED."""


class MapFailedError(DurablyError):
    """``ctx.map`` stopped: more items failed than it tolerates, or too many to reach
    its ``min_successes``; ``result`` holds every item's outcome."""

    def __init__(self, message: str | None = None, *, result: Any = None) -> None:
        super().__init__(message)
        #: The :class:`~durably.fan_out.MapResult` (None when rebuilt from a record).
        self.result = result


class LeaseLostError(DurablyError):
    """This executor no longer owns the workflow; another executor took it over."""


class AppClosedError(DurablyError):
    """The app is not open; use ``async with app:`` (or ``with SyncDurably(...)``) first."""


class _ControlFlow(BaseException):
    """Base of internal jumps that must pass through user code untouched.

    They derive from BaseException so that ``except Exception`` in a workflow body
    cannot swallow them.
    """


class _Suspend(_ControlFlow):
    """Unwind the workflow: it waits for a timer or a signal and is replayed later."""

    def __init__(self, wake_at: int | None, reason: str, *, signal: str | None = None) -> None:
        super().__init__(reason)
        self.wake_at = wake_at
        self.reason = reason
        self.signal = signal


class _Abandon(_ControlFlow):
    """Stop running the workflow without writing anything (lease lost, app closing)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

"""Callbacks at the operation boundaries of a workflow run, for the test kit.

A production app has none (``RunEnvironment.hooks`` is None). ``durably.testing`` uses
them to crash a run at a chosen step and to replay a workflow from the top after every
operation. A callback may raise ``durably.errors._Abandon`` to stop the run with nothing
more written, as a crash or a lost lease would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from durably.context_core import ContextCore
    from durably.models import OperationKind, OperationRecord


class RunHooks(Protocol):
    """What the test kit is told about a running workflow body."""

    def operation_called(self, context: ContextCore) -> None:
        """The body called a durable operation (before it takes its sequence number)."""
        ...

    def running_live(self, context: ContextCore, kind: OperationKind, name: str, seq: int) -> None:
        """An operation that is not in the history is about to run live."""
        ...

    def recording(self, context: ContextCore, operation: OperationRecord, *, written: bool) -> None:
        """Called before (``written=False``) and after (``True``) an operation record
        is written."""
        ...

    def body_ended(self, context: ContextCore) -> None:
        """The body returned or raised (it did not suspend and was not abandoned)."""
        ...

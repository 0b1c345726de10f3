"""Observer hooks: callbacks for monitoring, every one of them actually called.

Subclass :class:`Observer` and override what you need; pass instances as
``Durably(observers=[...])``. An observer that raises is logged and ignored: it can
never change the outcome of a workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from durably.models import WorkflowStatus

logger = logging.getLogger("durably.observers")


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
        """A recovered run ended (``succeeded``: it completed)."""

    def on_error(self, workflow_id: str, context: str, error: BaseException) -> None:
        """An error durably handled internally (a store failure, a lost lease...)."""


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

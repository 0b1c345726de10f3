"""Which workflow run the current task belongs to, for log records.

The runner enters the scope at the start of each run, in the run's own task; the
workflow body, its steps (also ``def`` steps in worker threads) and its compensations
inherit it, and it ends with the task. Standard library only: the runner imports it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunScope:
    """The workflow run that the current code works for."""

    workflow_id: str
    workflow_name: str
    executor_id: str


_run_scope: ContextVar[RunScope | None] = ContextVar("durably_run_scope", default=None)


def enter_run_scope(workflow_id: str, workflow_name: str, executor_id: str) -> None:
    """Mark the current task as running this workflow (called by the runner).

    Not reset: each run has its own task, whose context ends with it.
    """
    _run_scope.set(RunScope(workflow_id, workflow_name, executor_id))


def current_run_scope() -> RunScope | None:
    """The run of the current task, or None outside any workflow run."""
    return _run_scope.get()

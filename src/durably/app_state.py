"""The state that the parts of :class:`~durably.engine.Durably` share.

``Durably`` is composed of parts, one concern each (``app_*.py``): declarations,
the runs of this process, lifecycle and recovery, acting on workflows, reads. Each part
is a class that ``Durably`` inherits from; this base declares the attributes they share,
and ``Durably.__init__`` (in ``engine.py``) sets them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from durably.clock import Clock
from durably.environment import RunEnvironment
from durably.errors import AppClosedError
from durably.models import WorkflowRecord, WorkflowStatus
from durably.notifier import Notifier
from durably.queues import Queue
from durably.registry import Registry
from durably.runner import WorkflowRun
from durably.scheduler import Scheduler
from durably.store import Store


class AppState:
    """The attributes the parts of ``Durably`` share (set by ``Durably.__init__``)."""

    #: This process's identity in leases.
    executor_id: str
    #: The workflows (and their steps) registered on this app.
    registry: Registry
    #: The queues declared on this app, by name.
    queues: dict[str, Queue]

    _store: Store
    _clock: Clock
    _notifier: Notifier
    _env: RunEnvironment
    _scheduler: Scheduler
    _lease_duration: int
    _max_recovery_attempts: int
    _max_concurrent: int
    # The workflows running in this process: each run and the task that executes it.
    _runs: dict[str, tuple[WorkflowRun, asyncio.Task[WorkflowStatus | None]]]
    # Claimed again while their previous run here was ending: launched once it is gone.
    _relaunch: dict[str, WorkflowRecord]
    # Pauses before running again a workflow whose run stopped on a store failure.
    _retry_tasks: set[asyncio.Future[None]]
    _is_worker: bool
    _is_open: bool
    _is_closing: bool
    _new_id: Callable[[], str]

    def _require_open(self) -> None:
        if not self._is_open or self._is_closing:
            raise AppClosedError()

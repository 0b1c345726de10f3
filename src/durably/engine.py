"""The app object: register workflows, start them, signal, cancel, query, recover.

:class:`Durably` is composed of one part per concern, each a class it inherits from:

* :mod:`durably.app_declarations`: workflows, steps, queues and schedules;
* :mod:`durably.app_runs`: recording new workflows, running those this process owns;
* :mod:`durably.app_lifecycle`: opening, closing and recovery;
* :mod:`durably.app_actions`: signals and cancellation;
* :mod:`durably.app_reads`: descriptions, events, streams, progress and results;
* :mod:`durably.app_state`: the state they share.

This module wires them together (the constructor) and starts workflows.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar, overload

from durably.app_actions import AppActions
from durably.app_declarations import AppDeclarations
from durably.app_lifecycle import AppLifecycle, RecoveryReport
from durably.app_reads import AppReads
from durably.children import ChildWorkflows
from durably.clock import Clock, SystemClock
from durably.codec import PayloadCodec, Serializer
from durably.environment import RunEnvironment, to_micros
from durably.error_records import default_error_formatter
from durably.errors import ConfigurationError
from durably.handles import WorkflowHandle
from durably.identifiers import time_ordered_id, validate_identifier
from durably.notifier import Notifier
from durably.observers import Observer, ObserverSet
from durably.queues import Queue, check_priority, queue_name
from durably.recovery_trigger import RecoveryTrigger
from durably.redaction import RedactingFormatter, Redaction
from durably.registry import Registry
from durably.retry import DEFAULT_COMPENSATION_RETRY, RetryPolicy
from durably.scheduler import Scheduler
from durably.schedules import Schedule
from durably.store import Store, open_store
from durably.worker import Worker, default_executor_id

__all__ = ["Durably", "RecoveryReport"]

R = TypeVar("R")


class Durably(AppDeclarations, AppLifecycle, AppActions, AppReads):
    """A durable workflow app: one store, the workflows registered on it, an executor.

    ``async with Durably(...) as app:`` opens the store, recovers every unfinished
    workflow this app can run (without waiting for any of them), and starts the
    timer/claim and heartbeat loops. Leaving the block stops them and releases every
    lease so that another process can resume the work at once.

    Args:
        store: A :class:`~durably.store.Store`, or a URL: ``"sqlite:///path.db"``
            (add ``?synchronous=FULL`` for power-loss durability), ``"memory://"`` or
            ``"postgresql://..."``.
        executor_id: This process's identity in leases (default: host, pid, random).
            Give a stable id to let a restarted process take back its work at once.
        clock: Time source (``durably.testing.FakeClock`` in tests).
        serializer: Payload serializer (default JSON; pickle only if you pass it).
        max_payload_bytes: Largest encoded payload accepted.
        lease_duration: How long a claim lasts without a heartbeat.
        poll_interval: How often to look for work made due by other processes.
        inline_wait: Waits up to this long stay in memory; longer ones unwind.
        max_recovery_attempts: Park a workflow whose process died this many times.
        error_formatter: Turns an exception into the stored message.
        redact: Secrets to remove from stored error messages and tracebacks: regular
            expressions, functions ``str -> str``, or a list of them (see
            :mod:`durably.redaction`). The live exception is unchanged.
        observers: :class:`~durably.observers.Observer` instances.
        claim_batch_size: How many workflows one claim takes at most.
        max_concurrent_workflows: The most claimed workflows this process runs at
            once; with several worker processes, each takes only its share.
        compensation_retry: Retry policy of compensations registered without one.
        id_generator: Makes workflow ids when a start gives none (default: a
            time-ordered UUID, version 7, see :func:`durably.identifiers.time_ordered_id`).
        worker: Run workflows in this process (default). ``False`` makes a client that
            only starts, signals, cancels and queries: its starts stay ``PENDING`` until
            a worker claims them.
        recovery_debounce: Recovery requests (:meth:`request_recovery`) made within
            this long of the first one are served by one recovery pass.
    """

    def __init__(
        self,
        store: Store | str = "sqlite:///durably.db",
        *,
        executor_id: str | None = None,
        clock: Clock | None = None,
        serializer: Serializer | None = None,
        max_payload_bytes: int = 16 * 1024 * 1024,
        lease_duration: timedelta | float = timedelta(seconds=30),
        poll_interval: timedelta | float = timedelta(seconds=1),
        inline_wait: timedelta | float = timedelta(seconds=1),
        max_recovery_attempts: int = 10,
        error_formatter: Callable[[BaseException], str] | None = None,
        redact: Redaction | None = None,
        observers: Sequence[Observer] = (),
        claim_batch_size: int = 100,
        max_concurrent_workflows: int = 1000,
        compensation_retry: RetryPolicy = DEFAULT_COMPENSATION_RETRY,
        worker: bool = True,
        id_generator: Callable[[], str] | None = None,
        recovery_debounce: timedelta | float = timedelta(seconds=1),
    ) -> None:
        self._store = open_store(store) if isinstance(store, str) else store
        self.executor_id = validate_identifier(
            default_executor_id() if executor_id is None else executor_id, "executor_id"
        )
        self.registry = Registry()
        self._clock = clock or SystemClock()
        self._notifier = Notifier(self._clock)
        lease = to_micros(lease_duration, "lease_duration")
        if lease <= 0 or to_micros(poll_interval, "poll_interval") <= 0:
            raise ConfigurationError("lease_duration and poll_interval must be positive")
        if max_recovery_attempts < 1:
            raise ConfigurationError("max_recovery_attempts must be at least 1")
        if max_concurrent_workflows < 1 or claim_batch_size < 1:
            raise ConfigurationError(
                "max_concurrent_workflows and claim_batch_size must be at least 1"
            )
        self._env = RunEnvironment(
            store=self._store,
            codec=PayloadCodec(serializer, max_payload_bytes=max_payload_bytes),
            clock=self._clock,
            notifier=self._notifier,
            observers=ObserverSet(observers),
            error_formatter=(
                error_formatter or default_error_formatter
                if redact is None
                else RedactingFormatter(redact, error_formatter)
            ),
            inline_wait=to_micros(inline_wait, "inline_wait"),
            poll_interval=to_micros(poll_interval, "poll_interval"),
            rng=random.Random(),
            compensation_retry=compensation_retry,
            children=ChildWorkflows(
                store=self._store,
                clock=self._clock,
                notifier=self._notifier,
                registry=self.registry,
                create=self._create,
                queue_name=self._declared_queue_name,
                interrupt=self._interrupt_cancelled,
            ),
        )
        self._lease_duration = lease
        self._max_recovery_attempts = max_recovery_attempts
        self._worker = Worker(
            store=self._store,
            clock=self._clock,
            notifier=self._notifier,
            executor_id=self.executor_id,
            names=self.registry.names,
            versions=self.registry.versions,
            launch=self._launch,
            on_cancel_requested=self._interrupt_cancelled,
            lease_duration=lease,
            heartbeat_interval=max(lease // 3, 1),
            poll_interval=self._env.poll_interval,
            claim_batch_size=claim_batch_size,
            free_slots=lambda: self._max_concurrent - len(self._runs),
            queues=lambda: [queue.limits for queue in self.queues.values()],
        )
        self._max_concurrent = max_concurrent_workflows
        self._runs = {}
        self.queues = {}
        self._retry_tasks = set()
        self._relaunch = {}
        self._is_worker = worker
        self._new_id = id_generator or time_ordered_id
        self._is_open = False
        self._is_closing = False
        self._feed = None
        self._scheduler = Scheduler(
            store=self._store,
            clock=self._clock,
            fire=self._fire_tick,
            retry_interval=self._env.poll_interval,
        )
        self._recovery_trigger = RecoveryTrigger(
            clock=self._clock,
            recover=self.recover,
            debounce=to_micros(recovery_debounce, "recovery_debounce"),
        )

    @property
    def store(self) -> Store:
        """The store this app records workflows in."""
        return self._store

    async def __aenter__(self) -> Durably:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- starting -------------------------------------------------------------------------

    @overload
    async def start(
        self,
        workflow: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> WorkflowHandle[R]: ...

    @overload
    async def start(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> WorkflowHandle[R]: ...

    @overload
    async def start(
        self,
        workflow: str,
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> WorkflowHandle[Any]: ...

    async def start(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> WorkflowHandle[Any]:
        """Start a workflow and return its handle at once (the body runs in the background).

        Args:
            workflow: The decorated workflow function (or its registered name).
            *args: The workflow's arguments (after the context).
            workflow_id: Makes the start idempotent: starting the same id again returns
                the existing workflow. Default: a random UUID.
            timeout: A durable deadline for the whole workflow.
            **kwargs: The workflow's keyword arguments.

        Raises:
            WorkflowNotRegisteredError: the workflow is not registered in this app.
            WorkflowConflictError: the id exists with another workflow or input.
            PayloadError: an argument cannot be stored faithfully.
            ValueError: the id is not a valid identifier.
        """
        self._require_open()
        definition = self.registry.lookup(workflow)
        identifier = await self._create(
            definition, args, kwargs, workflow_id, timeout, queue=None, priority=0
        )
        return WorkflowHandle(self, identifier)

    @overload
    async def enqueue(
        self,
        workflow: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        queue: Queue | str,
        priority: int = ...,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> WorkflowHandle[R]: ...

    @overload
    async def enqueue(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        queue: Queue | str,
        priority: int = ...,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> WorkflowHandle[R]: ...

    @overload
    async def enqueue(
        self,
        workflow: str,
        /,
        *args: Any,
        queue: Queue | str,
        priority: int = ...,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> WorkflowHandle[Any]: ...

    async def enqueue(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        queue: Queue | str,
        priority: int = 0,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> WorkflowHandle[Any]:
        """Put a workflow on a queue and return its handle at once; a worker that
        declares the queue runs it when the queue's limits allow.

        Args:
            workflow: The decorated workflow function (or its registered name).
            *args: The workflow's arguments (after the context).
            queue: A queue declared with :meth:`queue` (or its name).
            priority: Higher priorities are claimed first (default 0).
            workflow_id: Makes the enqueue idempotent (as for :meth:`start`).
            timeout: A durable deadline for the whole workflow, from now.
            **kwargs: The workflow's keyword arguments.

        Raises:
            ConfigurationError: the queue is not declared in this app.
            WorkflowNotRegisteredError: the workflow is not registered in this app.
            WorkflowConflictError: the id exists with another workflow or input.
            PayloadError: an argument cannot be stored faithfully.
        """
        self._require_open()
        name = self._declared_queue_name(queue)
        check_priority(priority)
        definition = self.registry.lookup(workflow)
        identifier = await self._create(
            definition, args, kwargs, workflow_id, timeout, queue=name, priority=priority
        )
        self._notifier.notify_work_due()
        return WorkflowHandle(self, identifier)

    @overload
    async def run(
        self,
        workflow: Callable[..., Awaitable[R]],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> R: ...

    @overload
    async def run(
        self,
        workflow: Callable[..., R],
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> R: ...

    @overload
    async def run(
        self,
        workflow: str,
        /,
        *args: Any,
        workflow_id: str | None = ...,
        timeout: timedelta | float | None = ...,
        **kwargs: Any,
    ) -> Any: ...

    async def run(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start a workflow and wait for its result (see :meth:`start`)."""
        handle = await self.start(
            workflow, *args, workflow_id=workflow_id, timeout=timeout, **kwargs
        )
        return await handle.result()

    def handle(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to an existing workflow, by id."""
        return WorkflowHandle(self, validate_identifier(workflow_id, "workflow_id"))

    def _declared_queue_name(self, queue: Queue | str) -> str:
        """The name of ``queue``, which this app must declare.

        Raises:
            ConfigurationError: it is not declared.
        """
        name = queue_name(queue)
        if name not in self.queues:
            raise ConfigurationError(
                f"queue {name!r} is not declared in this app; declare it with "
                f"app.queue({name!r}, ...) (declared: {sorted(self.queues) or 'none'})"
            )
        return name

    async def _fire_tick(self, schedule: Schedule, tick: datetime) -> None:
        workflow_id = schedule.workflow_id(tick)
        if schedule.queue is None:
            await self.start(schedule.workflow_name, tick, workflow_id=workflow_id)
        else:
            await self.enqueue(
                schedule.workflow_name, tick, queue=schedule.queue, workflow_id=workflow_id
            )

"""The app object: register workflows, start them, signal, cancel, query, recover."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from durably import events
from durably.change_feed import follow_changes
from durably.children import ChildWorkflows
from durably.clock import Clock, SystemClock
from durably.codec import PayloadCodec, Serializer
from durably.environment import RunEnvironment, to_micros
from durably.error_records import default_error_formatter, rebuild_error
from durably.errors import (
    AppClosedError,
    ConfigurationError,
    WorkflowCancelled,
    WorkflowConflictError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    _Abandon,
)
from durably.handles import WorkflowHandle, WorkflowInfo
from durably.identifiers import validate_identifier, validate_signal_name
from durably.models import LEASED_STATUSES, WorkflowRecord, WorkflowStatus
from durably.notifier import Notifier, progress_key
from durably.observers import Observer, ObserverSet
from durably.queues import Queue
from durably.recovery_trigger import RecoveryReports, RecoveryTrigger
from durably.redaction import RedactingFormatter, Redaction
from durably.registry import DEFINITION_ATTRIBUTE, Registry, StepDefinition, WorkflowDefinition
from durably.retry import DEFAULT_COMPENSATION_RETRY, RetryPolicy
from durably.runner import WorkflowRun
from durably.scheduler import Scheduler, check_tick_parameter
from durably.schedules import (
    DEFAULT_MAX_BACKFILL,
    CronExpression,
    Schedule,
    validate_max_backfill,
)
from durably.step_call import step_function
from durably.store import Store, open_store
from durably.store.base import ChangeFeed
from durably.worker import Worker, default_executor_id

logger = logging.getLogger("durably")

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What one recovery pass claimed and started."""

    resumed: tuple[str, ...]

    def __str__(self) -> str:
        return f"RecoveryReport(resumed: {len(self.resumed)})"


class Durably:
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
        id_generator: Makes workflow ids when a start gives none (default: UUID4).
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
                create=functools.partial(self._create, queue=None, priority=0),
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
        self._runs: dict[str, tuple[WorkflowRun, asyncio.Task[WorkflowStatus | None]]] = {}
        self.queues: dict[str, Queue] = {}
        self._retry_tasks: set[asyncio.Future[None]] = set()
        self._relaunch: dict[str, WorkflowRecord] = {}
        self._is_worker = worker
        self._new_id = id_generator or (lambda: str(uuid.uuid4()))
        self._is_open = False
        self._is_closing = False
        self._feed: asyncio.Future[None] | None = None
        self._scheduler = Scheduler(
            store=self._store,
            clock=self._clock,
            fire=self._fire_tick,
            retry_interval=self._env.poll_interval,
        )
        self._recovery_trigger: RecoveryTrigger[RecoveryReport] = RecoveryTrigger(
            clock=self._clock,
            recover=self.recover,
            debounce=to_micros(recovery_debounce, "recovery_debounce"),
        )

    @property
    def store(self) -> Store:
        """The store this app records workflows in."""
        return self._store

    # -- registration -----------------------------------------------------------------

    def workflow(
        self,
        name: str | None = None,
        *,
        version: str | None = None,
        also_runs: Collection[str] = (),
    ) -> Callable[[F], F]:
        """Register a workflow: ``@app.workflow()`` on ``async def`` or ``def f(ctx, ...)``.

        Each workflow records the version it was started with, and an executor resumes
        only the versions its code runs (see docs/versioning.md).

        Args:
            name: Stored name (default: the function's qualified name). Keep it stable.
            version: Explicit version (default: a hash of the function's source).
            also_runs: Older versions whose unfinished workflows this code resumes too,
                because it replays their histories (changes guarded with
                ``ctx.patched()``), e.g. ``version="2", also_runs=["1"]``.
        """

        def register(fn: F) -> F:
            definition = self.registry.register_workflow(
                fn, name=name, version=version, also_runs=also_runs
            )
            setattr(fn, DEFINITION_ATTRIBUTE, definition)
            return fn

        return register

    def step(
        self,
        name: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        compensate: Callable[..., Any] | None = None,
    ) -> Callable[[F], F]:
        """Declare a step: calling the function inside a workflow runs it durably.

        Outside a workflow the function runs as a plain call. An ``async def`` step is
        awaited (``await charge(...)``); a plain ``def`` step is called from ``def``
        workflows, or through ``await ctx.step(name, fn, ...)`` from async ones.
        """

        def declare(fn: F) -> F:
            definition = StepDefinition(
                name=validate_identifier(fn.__name__ if name is None else name, "step name"),
                fn=fn,
                retry=retry,
                timeout=None
                if timeout is None
                else timedelta(microseconds=to_micros(timeout, "step timeout")),
                compensate=compensate,
            )
            return step_function(definition)  # type: ignore[return-value]

        return declare

    def queue(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: int | None = None,
        per: timedelta | float = timedelta(seconds=1),
    ) -> Queue:
        """Declare a queue that this app's workers claim from (see :mod:`durably.queues`).

        Args:
            name: The stored queue name.
            concurrency: The most of its workflows running at once, across all workers.
            worker_concurrency: The most of its workflows this process runs at once.
            rate_limit: The most of its workflows started per ``per``.
            per: The rate limit's window (default one second).

        Raises:
            ConfigurationError: a limit is not a positive integer, or the queue was
                declared already with other limits.
        """
        window = (
            per if isinstance(per, timedelta) else timedelta(microseconds=to_micros(per, "per"))
        )
        queue = Queue(name, concurrency, worker_concurrency, rate_limit, window)
        existing = self.queues.setdefault(name, queue)
        if existing != queue:
            raise ConfigurationError(
                f"queue {name!r} is already declared with other limits ({existing}); "
                f"declare each queue once"
            )
        return existing

    def scheduled(
        self,
        cron: str,
        *,
        name: str | None = None,
        timezone: str | tzinfo = "UTC",
        backfill: bool = False,
        max_backfill: int = DEFAULT_MAX_BACKFILL,
    ) -> Callable[[F], F]:
        """Run a workflow on a cron schedule: ``@app.scheduled("*/5 * * * *")`` on
        ``async def report(ctx, tick: datetime)`` (see :mod:`durably.schedules`).

        Each tick starts the workflow once, with the tick's time (an aware datetime in
        ``timezone``), under the id ``sched:{name}:{tick in UTC}``: however many
        processes share the store, one run per tick. The ticks fire while a worker
        app is open. A function not yet decorated with :meth:`workflow` is registered
        as a workflow named ``name`` (with the default version); stack
        ``@app.workflow(...)`` below to choose its name and version apart.

        Args:
            cron: Five fields, minute hour day-of-month month day-of-week.
            name: The schedule's name (default: the workflow's name), part of each
                tick's workflow id.
            timezone: The time zone the expression is read in (default UTC).
            backfill: After downtime, run every missed tick (oldest first) instead of
                only the newest one.
            max_backfill: The most missed ticks run with ``backfill``: the newest ones.

        Raises:
            ValueError: the expression, the time zone or ``max_backfill`` is invalid.
            ConfigurationError: the ``schedules`` extra is missing (``pip install
                'durably[schedules]'``), the workflow does not take ``(ctx, tick:
                datetime)``, or the schedule's name is taken.
        """
        expression = CronExpression.parse(cron, timezone)
        validate_max_backfill(max_backfill)
        if name is not None:
            validate_identifier(name, "schedule name")

        def register(fn: F) -> F:
            definition = getattr(fn, DEFINITION_ATTRIBUTE, None)
            if not isinstance(definition, WorkflowDefinition) or (
                self.registry.workflows.get(definition.name) is not definition
            ):
                fn = self.workflow(name)(fn)
                definition = getattr(fn, DEFINITION_ATTRIBUTE)
            check_tick_parameter(definition, self._env.codec)
            schedule = Schedule(
                name=definition.name if name is None else name,
                workflow_name=definition.name,
                cron=expression,
                backfill=backfill,
                max_backfill=max_backfill,
            )
            self._scheduler.add(schedule)
            return fn

        return register

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store, recover unfinished work and start the background loops."""
        if self._is_open:
            return
        await self._store.open()
        self._is_open = True
        self._is_closing = False
        if isinstance(self._store, ChangeFeed):
            self._feed = asyncio.ensure_future(
                follow_changes(self._store, self._notifier, self._interrupt_cancelled)
            )
        if self._is_worker:
            await self._worker.start()
            self._scheduler.start()
        self._recovery_trigger.bind(asyncio.get_running_loop())

    async def close(self, *, grace: timedelta | float = 0) -> None:
        """Stop the loops, stop running bodies without writing, release every lease.

        Workflows that were running stay recoverable: another process (or this one
        after a restart) resumes them from their last recorded operation; the leases
        are released, so another process claims them at once. Idempotent.

        Args:
            grace: First stop claiming and give the running workflows up to this long
                (wall-clock seconds or a timedelta) to finish or reach a durable wait,
                with their leases still renewed; only those still running then are
                stopped and released.
        """
        if not self._is_open:
            return
        self._is_closing = True
        await self._scheduler.stop()
        await self._recovery_trigger.close()
        grace_seconds = to_micros(grace, "grace") / 1_000_000
        if grace_seconds > 0 and self._runs:
            if self._is_worker:
                await self._worker.stop_claiming()
            tasks = [task for _, task in self._runs.values()]
            logger.info("waiting up to %.1fs for %d running workflow(s)", grace_seconds, len(tasks))
            await asyncio.wait(tasks, timeout=grace_seconds)
        for retry in list(self._retry_tasks):
            retry.cancel()
        if self._is_worker:
            await self._worker.stop()
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
            self._feed = None
        runs = list(self._runs.values())
        for run, _ in runs:
            run.interrupt(_Abandon("the app is closing"))
        for _, task in runs:
            try:
                await task
            except BaseException:
                logger.exception("workflow run failed while closing")
        try:
            await self._store.release_workflows(owner=self.executor_id)
            await self._store.remove_executor(executor_id=self.executor_id, expire_leases=False)
        finally:
            await self._store.close()
            self._is_open = False

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

    def _require_open(self) -> None:
        if not self._is_open or self._is_closing:
            raise AppClosedError()

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
        name = queue.name if isinstance(queue, Queue) else queue
        if name not in self.queues:
            raise ConfigurationError(
                f"queue {name!r} is not declared in this app; declare it with "
                f"app.queue({name!r}, ...) (declared: {sorted(self.queues) or 'none'})"
            )
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an integer, not {priority!r}")
        definition = self.registry.lookup(workflow)
        identifier = await self._create(
            definition, args, kwargs, workflow_id, timeout, queue=name, priority=priority
        )
        self._notifier.notify_work_due()
        return WorkflowHandle(self, identifier)

    async def _create(
        self,
        definition: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        workflow_id: str | None,
        timeout: timedelta | float | None,
        *,
        queue: str | None,
        priority: int,
    ) -> str:
        """Record a new workflow (launched here at once unless queued or a client),
        or find the one with this id; return the id."""
        identifier = validate_identifier(
            workflow_id if workflow_id is not None else self._new_id(), "workflow_id"
        )
        arguments = definition.bind_input(args, kwargs)
        encoded = self._env.codec.encode(
            arguments, definition.input_hint, what=f"the input of workflow {identifier!r}"
        )
        now = self._clock.now()
        runs_here = self._is_worker and queue is None
        record = WorkflowRecord(
            workflow_id=identifier,
            workflow_name=definition.name,
            status=WorkflowStatus.RUNNING if runs_here else WorkflowStatus.PENDING,
            version=definition.version,
            input=encoded,
            serializer=self._env.codec.serializer_name,
            owner=self.executor_id if runs_here else None,
            fence=1 if runs_here else 0,
            lease_until=now + self._lease_duration if runs_here else None,
            deadline_at=None if timeout is None else now + to_micros(timeout, "timeout"),
            created_at=now,
            updated_at=now,
            queue_name=queue,
            priority=priority,
            started_at=now if runs_here else None,
        )
        stored, created = await self._store.create_workflow(record)
        if created and runs_here:
            self._launch(stored)
        elif stored.workflow_name != definition.name or stored.input != encoded:
            raise WorkflowConflictError(
                f"workflow id {identifier!r} is already used by workflow "
                f"{stored.workflow_name!r} with "
                f"{'the same' if stored.input == encoded else 'a different'} input; "
                f"choose another workflow_id, or start it with the same workflow and input "
                f"to get the existing one"
            )
        elif self._is_orphaned_here(stored):
            # An earlier start of this very workflow committed but its caller saw an
            # error (a connection lost after the commit, a timeout) and retried: the
            # record is ours, its lease renewed by our heartbeat, and nothing runs it.
            self._launch(stored)
        return identifier

    def _is_orphaned_here(self, record: WorkflowRecord) -> bool:
        """Whether ``record`` is claimed by this executor but not running in it."""
        return (
            self._is_worker
            and not self._is_closing
            and record.owner == self.executor_id
            and record.status in LEASED_STATUSES
            and record.workflow_id not in self._runs
            and record.workflow_id not in self._relaunch
        )

    @overload
    async def run(
        self,
        workflow: Callable[..., Awaitable[R]] | Callable[..., R],
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

    # -- running ---------------------------------------------------------------------------

    def _launch(self, record: WorkflowRecord) -> None:
        if record.workflow_id in self._runs:
            # Claimed again while its previous run here is ending (it suspended and a
            # signal made it due at once, or its lease was taken over): the claim is
            # ours now; run it as soon as the previous run is gone.
            self._relaunch[record.workflow_id] = record
            return
        definition = self.registry.workflows[record.workflow_name]
        run = WorkflowRun(
            self._env,
            definition,
            record,
            recovered=record.recovery_attempts > 0,
            max_recovery_attempts=self._max_recovery_attempts,
        )
        task = asyncio.ensure_future(run.execute())
        self._runs[record.workflow_id] = (run, task)
        task.add_done_callback(functools.partial(self._forget_run, record.workflow_id))

    def _forget_run(self, workflow_id: str, task: asyncio.Task[WorkflowStatus | None]) -> None:
        entry = self._runs.get(workflow_id)
        entry_queue = None if entry is None else entry[0].record.queue_name
        if entry is not None and entry[1] is task:
            del self._runs[workflow_id]
            claimed_again = self._relaunch.pop(workflow_id, None)
            if claimed_again is not None and self._is_open and not self._is_closing:
                self._launch(claimed_again)
            if entry[0].failed_on_store and self._is_open and not self._is_closing:
                self._retry_tasks.add(asyncio.ensure_future(self._run_again(entry[0].record)))
        if not task.cancelled() and task.exception() is not None:
            logger.error("workflow %s run crashed", workflow_id, exc_info=task.exception())
        self._notifier.notify(workflow_id)
        if len(self._runs) + 1 == self._max_concurrent or entry_queue is not None:
            # A slot is free (this process's, or its queue's): claim more now.
            self._notifier.notify_work_due()

    async def _run_again(self, record: WorkflowRecord) -> None:
        """Re-run a workflow whose run stopped on a store failure, after a pause: this
        executor still owns it, so nobody else would (its fence guards every write)."""
        task = asyncio.current_task()
        assert task is not None
        try:
            await self._clock.sleep_until(self._clock.now() + self._env.poll_interval)
            if self._is_open and not self._is_closing:
                logger.info("running workflow %s again after a store failure", record.workflow_id)
                self._launch(record)
        finally:
            self._retry_tasks.discard(task)

    def _interrupt_cancelled(self, workflow_ids: list[str]) -> None:
        for workflow_id in workflow_ids:
            entry = self._runs.get(workflow_id)
            if entry is not None:
                entry[0].interrupt(WorkflowCancelled(f"workflow {workflow_id!r} was cancelled"))

    async def recover(self) -> RecoveryReport:
        """Claim and resume every workflow that is claimable now (without waiting for any
        of them to finish). The background loop does this continuously; call it to
        force a pass."""
        self._require_open()
        claimed = await self._worker.claim_due()
        return RecoveryReport(resumed=tuple(record.workflow_id for record in claimed))

    def request_recovery(self) -> None:
        """Ask for a recovery pass without waiting for it; callable from any thread.

        Requests made within ``recovery_debounce`` of the first one are served by one
        pass; a request made while a pass runs gets another pass after it. Each pass's
        report goes to the streams of :meth:`recovery_reports`.

        Raises:
            AppClosedError: the app is not open.
        """
        self._require_open()
        self._recovery_trigger.request()

    def recovery_reports(self) -> RecoveryReports[RecoveryReport]:
        """An async iterator over the reports of the requested recovery passes that end
        from now on (see :meth:`request_recovery`); it ends when the app closes.

        Raises:
            AppClosedError: the app is not open.
        """
        self._require_open()
        return self._recovery_trigger.subscribe()

    async def _fire_tick(self, schedule: Schedule, tick: datetime) -> None:
        await self.start(schedule.workflow_name, tick, workflow_id=schedule.workflow_id(tick))

    # -- acting on workflows ------------------------------------------------------------------

    async def send_signal(
        self,
        workflow_id: str,
        name: str,
        payload: object = None,
        *,
        dedup_key: str | None = None,
    ) -> bool:
        """Append a signal to a workflow's inbox; it is consumed by ``ctx.wait_signal``.

        Args:
            workflow_id: The receiving workflow.
            name: The signal's name.
            payload: Any encodable value (decoded by the waiter's ``payload_type``).
            dedup_key: Makes the send idempotent: a second send with the same key to the
                same workflow is ignored.

        Returns:
            True when appended, False when ignored as a duplicate of ``dedup_key``.

        Raises:
            WorkflowNotFoundError: no such workflow.
            WorkflowFinishedError: the workflow has already finished.
        """
        self._require_open()
        validate_identifier(workflow_id, "workflow_id")
        validate_signal_name(name)
        if dedup_key is not None:
            validate_identifier(dedup_key, "dedup_key")
        encoded = self._env.codec.encode(
            payload, Any, what=f"the payload of signal {name!r}", verify=False
        )
        _, appended = await self._store.append_signal(
            workflow_id,
            name,
            encoded,
            serializer=self._env.codec.serializer_name,
            dedup_key=dedup_key,
            now=self._clock.now(),
        )
        self._notifier.notify(workflow_id)
        self._notifier.notify_work_due()
        return appended

    async def cancel(self, workflow_id: str, *, compensate: bool = False) -> WorkflowStatus:
        """Cancel a workflow durably and cooperatively.

        The request is recorded; a running step (async) is cancelled and the next
        durable operation raises ``WorkflowCancelled``. With ``compensate=True`` the
        registered compensations run first.

        Returns:
            The workflow's status right after the request (``CANCELLED`` when nobody
            was running it, else its live status until the run stops).

        Raises:
            WorkflowNotFoundError: no such workflow.
            WorkflowFinishedError: it already ended in another status.
        """
        self._require_open()
        record = await self._store.request_cancel(
            validate_identifier(workflow_id, "workflow_id"),
            compensate=compensate,
            now=self._clock.now(),
        )
        self._interrupt_cancelled([workflow_id])
        self._notifier.notify(workflow_id)
        self._notifier.notify_work_due()
        if record.status is WorkflowStatus.CANCELLED and self._env.children is not None:
            await self._env.children.workflow_ended(workflow_id, record.status)
        return record.status

    # -- queries -----------------------------------------------------------------------------

    async def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """The workflow's current description.

        Raises:
            WorkflowNotFoundError: no such workflow.
        """
        self._require_open()
        record = await self._store.get_workflow(workflow_id)
        if record is None:
            raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
        return WorkflowInfo.from_record(record)

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | Sequence[WorkflowStatus] | None = None,
        name: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[WorkflowInfo]:
        """Workflows filtered by status and name, ordered by creation time."""
        self._require_open()
        statuses = [status] if isinstance(status, WorkflowStatus) else status
        names = [name] if isinstance(name, str) else name
        records = await self._store.list_workflows(
            statuses=statuses, names=names, limit=limit, offset=offset, newest_first=newest_first
        )
        return [WorkflowInfo.from_record(record) for record in records]

    @overload
    async def get_event(
        self, workflow_id: str, key: str, *, timeout: timedelta | float | None = ...
    ) -> Any: ...

    @overload
    async def get_event(
        self,
        workflow_id: str,
        key: str,
        *,
        timeout: timedelta | float | None = ...,
        type: type[R],
    ) -> R | None: ...

    async def get_event(
        self,
        workflow_id: str,
        key: str,
        *,
        timeout: timedelta | float | None = 60.0,
        type: object = Any,
    ) -> Any:
        """The latest value a workflow published with ``ctx.set_event(key, ...)``,
        waiting for it to be set (see :mod:`durably.events`).

        Args:
            workflow_id: The publishing workflow.
            key: The event's name.
            timeout: Wait at most this long, on the app's clock (None: no limit).
            type: Decode the value into this type (a dataclass, a pydantic model...);
                by default it comes back as plain JSON data.

        Returns:
            The value, or None when the timeout passed first, or the workflow finished
            without setting it.

        Raises:
            WorkflowNotFoundError: no such workflow.
            PayloadError: the stored value does not fit ``type``.
        """
        self._require_open()
        micros = None if timeout is None else to_micros(timeout, "get_event timeout")
        return await events.get_event(self._env, workflow_id, key, timeout=micros, hint=type)

    @overload
    def read_stream(self, workflow_id: str, key: str) -> AsyncIterator[Any]: ...

    @overload
    def read_stream(self, workflow_id: str, key: str, *, type: type[R]) -> AsyncIterator[R]: ...

    def read_stream(self, workflow_id: str, key: str, *, type: object = Any) -> AsyncIterator[Any]:
        """Iterate over the entries a workflow writes with ``ctx.write_stream(key, ...)``,
        in order, as they are written: ``async for entry in app.read_stream(id, key)``.

        The iteration ends after the entry before ``ctx.close_stream(key)``, or once the
        workflow has stopped (finished, or parked) and every entry was read.

        Args:
            workflow_id: The writing workflow.
            key: The stream's name.
            type: Decode each entry into this type; by default plain JSON data.

        Raises:
            WorkflowNotFoundError: no such workflow (when iterating).
            PayloadError: an entry does not fit ``type``.
        """
        self._require_open()
        return events.read_stream(self._env, workflow_id, key, hint=type)

    async def watch(self, workflow_id: str) -> AsyncIterator[WorkflowInfo]:
        """Yield the workflow now, then again at every change, until it finishes.

        An unknown id yields nothing.
        """
        self._require_open()
        last: tuple[WorkflowStatus, int] | None = None
        channel = progress_key(workflow_id)  # woken by every recorded step
        with self._notifier.watching(channel):
            while True:
                seen = self._notifier.generation(channel)
                record = await self._store.get_workflow(workflow_id)
                if record is None:
                    return
                key = (record.status, record.updated_at)
                if key != last:
                    last = key
                    yield WorkflowInfo.from_record(record)
                if record.status.is_terminal:
                    return
                until = self._clock.now() + self._env.poll_interval
                await self._notifier.wait(channel, until, since=seen)

    async def wait_for_result(
        self, workflow_id: str, *, timeout: timedelta | float | None = None
    ) -> object:
        """Wait until the workflow finishes; return its decoded result (see handles)."""
        self._require_open()
        deadline = None if timeout is None else self._clock.now() + to_micros(timeout, "timeout")
        with self._notifier.watching(workflow_id):
            while True:
                seen = self._notifier.generation(workflow_id)
                record = await self._store.get_workflow(workflow_id)
                if record is None:
                    raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r}")
                if record.status is WorkflowStatus.COMPLETED:
                    definition = self.registry.workflows.get(record.workflow_name)
                    hint = definition.result_hint if definition is not None else Any
                    return self._env.codec.decode(
                        record.result,
                        record.serializer,
                        hint,
                        what=f"the result of workflow {workflow_id!r}",
                    )
                if record.status.is_terminal or record.status is WorkflowStatus.PARKED:
                    raise _failure(record)
                now = self._clock.now()
                if deadline is not None and now >= deadline:
                    raise TimeoutError(
                        f"workflow {workflow_id!r} is still {record.status} after the timeout"
                    )
                until = now + self._env.poll_interval
                if deadline is not None:
                    until = min(until, deadline)
                await self._notifier.wait(workflow_id, until, since=seen)


def _failure(record: WorkflowRecord) -> WorkflowFailedError:
    info = record.error_info
    detail = f": {info.type}: {info.message}" if info is not None else ""
    error = WorkflowFailedError(
        f"workflow {record.workflow_id!r} ended {record.status}{detail}",
        workflow_id=record.workflow_id,
        status=record.status,
        error_type=None if info is None else info.type,
        error_message=None if info is None else info.message,
        traceback=None if info is None else info.traceback,
    )
    if info is not None:
        error.__cause__ = rebuild_error(info)
    return error

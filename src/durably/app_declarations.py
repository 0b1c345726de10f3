"""Declaring what an app runs: workflows, steps, queues and cron schedules."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta, tzinfo
from typing import Any, TypeVar

from durably.app_state import AppState
from durably.environment import to_micros
from durably.errors import ConfigurationError
from durably.identifiers import validate_identifier
from durably.queues import Queue, queue_name
from durably.registry import DEFINITION_ATTRIBUTE, StepDefinition, WorkflowDefinition
from durably.retry import RetryPolicy
from durably.scheduler import check_tick_parameter
from durably.schedules import (
    DEFAULT_MAX_BACKFILL,
    CronExpression,
    Schedule,
    validate_max_backfill,
)
from durably.step_call import step_function

F = TypeVar("F", bound=Callable[..., Any])


class AppDeclarations(AppState):
    """The decorators and declarations of :class:`~durably.engine.Durably`."""

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
        queue: Queue | str | None = None,
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
            queue: Enqueue each tick's workflow on this queue (declared with
                :meth:`queue`, in this app or later) so that the queue's limits apply;
                by default each tick starts at once.

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
                queue=None if queue is None else queue_name(queue),
            )
            self._scheduler.add(schedule)
            return fn

        return register

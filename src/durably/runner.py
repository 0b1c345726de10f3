"""Drives one run of a claimed workflow: history, body, outcome, suspension, saga."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from durably.context import Context
from durably.corrupt_records import CorruptHistory, unreadable_history
from durably.environment import RunEnvironment
from durably.error_records import error_to_info
from durably.errors import (
    CompensationError,
    CorruptRecordError,
    LeaseLostError,
    NonDeterminismError,
    PayloadError,
    StoreError,
    WorkflowCancelled,
    WorkflowTimeoutError,
    _Abandon,
    _ControlFlow,
    _Suspend,
)
from durably.models import Fence, History, WorkflowRecord, WorkflowStatus, micros_to_datetime
from durably.observability.scope import enter_run_scope
from durably.registry import WorkflowDefinition
from durably.replay import check_fully_replayed
from durably.step_call import enter_workflow_body
from durably.sync_context import run_sync_body

logger = logging.getLogger("durably.runner")


class WorkflowRun:
    """One run of one workflow by the executor that claimed it.

    The run ends in one of: a terminal status, ``PARKED``, ``SUSPENDED`` (a timer or a
    signal resumes it by replay) or abandoned (lease lost or app closing: nothing is
    written and another run picks it up).
    """

    def __init__(
        self,
        env: RunEnvironment,
        definition: WorkflowDefinition,
        record: WorkflowRecord,
        *,
        recovered: bool,
        max_recovery_attempts: int,
        history: History | None = None,
        may_have_parent: bool = True,
    ) -> None:
        assert record.owner is not None
        #: False when this process created it as a top-level workflow just before this
        #: run and no parent has linked to it here since: no parent is looked for at
        #: its end.
        self.may_have_parent = may_have_parent
        self._known_history = history
        self._max_recovery_attempts = max_recovery_attempts
        self.workflow_id = record.workflow_id
        self._env = env
        self._definition = definition
        self._record = record
        self._recovered = recovered
        self._fence = Fence(workflow_id=record.workflow_id, owner=record.owner, fence=record.fence)
        self._context: Context | None = None
        self._body: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._pending_interrupt: BaseException | None = None
        #: The run stopped because the store failed: it still owns the workflow (its
        #: lease is renewed), so the engine runs it again after a pause.
        self.failed_on_store = False
        self.record = record
        #: The error the run ended with (for the observers' run hooks).
        self._final_error: BaseException | None = None
        #: The record its end was committed as (None until then), handed to waiters.
        self.final_record: WorkflowRecord | None = None

    def interrupt(self, error: BaseException) -> None:
        """Cancel the running body: its current operation stops and the next one
        raises ``error`` (``WorkflowCancelled``, ``WorkflowTimeoutError`` or an
        internal abandon)."""
        if self._context is None:
            self._pending_interrupt = error
            if isinstance(error, _Abandon) and self._task is not None:
                self._task.cancel()
            return
        self._context.interrupt(error)
        if isinstance(error, _Abandon) and self._task is not None:
            # Abandoning also stops compensations and store calls, not only the body.
            self._task.cancel()
        elif self._body is not None and not self._body.done():
            self._body.cancel()

    async def execute(self) -> WorkflowStatus | None:
        """Run the workflow until it finishes, suspends or is abandoned.

        Returns:
            The status written, or None when the run was abandoned.
        """
        env = self._env
        record = self._record
        self._task = asyncio.current_task()
        enter_run_scope(record.workflow_id, record.workflow_name, self._fence.owner)
        env.observers.emit("on_workflow_start", record.workflow_id, record.workflow_name)
        if self._recovered:
            env.observers.emit("on_recovery_start", record.workflow_id)
        observed = env.observers.workflow_run_started(
            workflow_id=record.workflow_id,
            workflow_name=record.workflow_name,
            version=record.version,
            executor_id=self._fence.owner,
            recovered=self._recovered,
            started_at=env.clock.now(),
        )
        status: WorkflowStatus | None
        try:
            status = await self._execute()
        except _Abandon as abandon:
            if isinstance(abandon.__cause__, CorruptRecordError):
                status = await self._park_unreadable(abandon.__cause__)
            else:
                logger.info("workflow %s abandoned: %s", record.workflow_id, abandon.reason)
                self.failed_on_store = isinstance(abandon.__cause__, StoreError)
                self._final_error = abandon
                status = None
        except CorruptHistory as stop:  # a recorded compensation error is unreadable
            status = await self._park_unreadable(stop.error)
        except CorruptRecordError as error:  # not transient: running it again cannot help
            status = await self._park_unreadable(error)
        except asyncio.CancelledError:
            if not isinstance(self._pending_interrupt, _Abandon) and not isinstance(
                self._context.interruption if self._context else None, _Abandon
            ):
                env.observers.workflow_run_ended(observed, None, env.clock.now())
                raise
            logger.info("workflow %s abandoned while stopping", record.workflow_id)
            status = None
        except (LeaseLostError, StoreError) as error:
            env.observers.emit("on_error", record.workflow_id, "run", error)
            logger.warning("workflow %s abandoned: %s", record.workflow_id, error)
            self.failed_on_store = isinstance(error, StoreError)
            self._final_error = error
            status = None
        except BaseException as error:
            env.observers.workflow_run_ended(observed, None, env.clock.now(), error)
            raise
        env.observers.workflow_run_ended(observed, status, env.clock.now(), self._final_error)
        if status is not None and status is not WorkflowStatus.SUSPENDED:
            env.observers.emit("on_workflow_finish", record.workflow_id, status)
        if self._recovered and status is not None:
            # A recovered run that suspends brought the workflow back to a durable
            # wait: the recovery succeeded (its later wake-ups are ordinary runs).
            recovered = status in (WorkflowStatus.COMPLETED, WorkflowStatus.SUSPENDED)
            env.observers.emit("on_recovery_complete", record.workflow_id, recovered)
        env.notifier.notify(record.workflow_id, final=self.final_record)
        if status is not None and status.is_terminal and env.children is not None:
            await env.children.workflow_ended(  # its parent, its children
                record.workflow_id, status, may_have_parent=self.may_have_parent
            )
        return status

    async def _execute(self) -> WorkflowStatus:
        env = self._env
        record = self._record
        if record.recovery_attempts > self._max_recovery_attempts:
            return await self._finish(
                WorkflowStatus.PARKED,
                error=RuntimeError(
                    f"parked after {record.recovery_attempts} recovery attempts: the process "
                    f"running workflow {record.workflow_id!r} died every time (look for a step "
                    f"that crashes or exhausts the process), then resume it"
                ),
            )
        try:
            history = self._known_history
            if history is None:
                history = await env.store.load_history(record.workflow_id)
        except CorruptRecordError as error:
            return await self._finish(
                WorkflowStatus.PARKED, error=unreadable_history(record.workflow_id, error)
            )
        context = Context(
            env,
            workflow_id=record.workflow_id,
            workflow_name=record.workflow_name,
            fence=self._fence,
            history=history,
            deadline_at=record.deadline_at,
        )
        self._context = context
        try:
            arguments = env.codec.decode(
                record.input,
                record.serializer,
                self._definition.input_hint,
                what=f"the input of workflow {record.workflow_id!r}",
            )
            args, kwargs = self._definition.call_arguments(dict(arguments))  # type: ignore[call-overload]
        except PayloadError as error:
            return await self._finish(WorkflowStatus.PARKED, error=error)
        if self._pending_interrupt is not None:
            context.interrupt(self._pending_interrupt)
        if record.cancel_requested:
            context.interrupt(_cancelled(record.workflow_id))
        deadline_timer = self._start_deadline_timer()
        try:
            outcome = await self._run_body(context, args, kwargs)
        finally:
            if deadline_timer is not None:
                deadline_timer.cancel()
        if context.nondeterminism is not None:
            return await self._finish(WorkflowStatus.PARKED, error=context.nondeterminism)
        if context.corrupt_record is not None:
            return await self._finish(WorkflowStatus.PARKED, error=context.corrupt_record)
        if isinstance(outcome, _Suspend):
            await context.wait_until_idle()
            await env.store.suspend_workflow(
                self._fence,
                now=env.clock.now(),
                wake_at=_earliest(outcome.wake_at, record.deadline_at),  # wakes to time out
                wait_reason=outcome.reason,
                waiting_for_signal=outcome.signal,
            )
            env.notifier.notify_work_due()
            env.notifier.notify_listed()
            return WorkflowStatus.SUSPENDED
        if isinstance(outcome, _Abandon):
            raise outcome
        if env.hooks is not None:
            env.hooks.body_ended(context)  # the test kit may stop the run here (replay)
        if isinstance(outcome, _Completed):
            try:
                check_fully_replayed(
                    history, workflow_id=record.workflow_id, visited=context.visited
                )
            except NonDeterminismError as error:
                return await self._finish(WorkflowStatus.PARKED, error=error)
            missed = context._unseen_timeout()
            if missed is not None:  # past the deadline, it never reached a live operation
                return await self._fail(context, missed)
            try:
                result = env.codec.encode(
                    outcome.value,
                    self._definition.result_hint,
                    what=f"the result of workflow {record.workflow_name!r} "
                    f"(id {record.workflow_id!r})",
                )
            except PayloadError as error:
                return await self._fail(context, error)
            return await self._finish(WorkflowStatus.COMPLETED, result=result)
        assert isinstance(outcome, BaseException)
        return await self._fail(context, outcome)

    async def _run_body(self, context: Context, args: Any, kwargs: Any) -> object:
        """Run the body; return _Completed, the exception it raised, or a control jump."""
        definition = self._definition
        if definition.is_async:
            self._body = asyncio.ensure_future(self._call_async(context, args, kwargs))
        else:
            self._body = asyncio.ensure_future(run_sync_body(definition.fn, context, args, kwargs))
        try:
            return _Completed(await self._body)
        except asyncio.CancelledError:
            interruption = context.interruption
            if interruption is None:
                raise
            return interruption
        except BaseExceptionGroup as group:
            return _control_flow_in(group) or group
        except (_ControlFlow, Exception) as error:
            return error

    async def _call_async(self, context: Context, args: Any, kwargs: Any) -> Any:
        enter_workflow_body(context)
        return await self._definition.fn(context, *args, **kwargs)

    def _start_deadline_timer(self) -> asyncio.Task[None] | None:
        deadline = self._record.deadline_at
        if deadline is None:
            return None
        if deadline <= self._env.clock.now():
            self.interrupt(_timed_out(self.workflow_id, deadline))
            return None

        async def expire() -> None:
            await self._env.clock.sleep_until(deadline)
            self.interrupt(_timed_out(self.workflow_id, deadline))

        return asyncio.ensure_future(expire())

    async def _fail(self, context: Context, error: BaseException) -> WorkflowStatus:
        record = self._record
        cancelled = isinstance(error, WorkflowCancelled)
        if cancelled:
            current = await self._env.store.get_workflow(record.workflow_id)
            record = current or record
        if cancelled and not record.compensate_on_cancel:
            return await self._finish(WorkflowStatus.CANCELLED, error=error)
        if not context.compensations.has_armed:
            final = WorkflowStatus.CANCELLED if cancelled else WorkflowStatus.FAILED
            return await self._finish(final, error=error)
        env = self._env
        await env.store.set_workflow_status(
            self._fence, WorkflowStatus.COMPENSATING, now=env.clock.now()
        )
        env.notifier.notify(record.workflow_id)
        order = context.compensations.unwind_order()
        env.observers.emit("on_compensation_start", record.workflow_id, [c.name for c in order])
        failures: list[tuple[str, Exception]] = []
        for entry in order:
            try:
                await context.run_compensation(entry)
            except Exception as failure:
                failures.append((entry.name, failure))
        if failures:
            described = "; ".join(f"{name}: {type(f).__name__}: {f}" for name, f in failures)
            summary = CompensationError(
                f"workflow {record.workflow_id!r} failed ({type(error).__name__}: {error}) and "
                f"{len(failures)} compensation(s) failed after their retries: {described}. "
                f"Fix the cause, then retry the workflow's compensation."
            )
            summary.__cause__ = error
            return await self._finish(WorkflowStatus.COMPENSATION_FAILED, error=summary)
        final = WorkflowStatus.CANCELLED if cancelled else WorkflowStatus.COMPENSATED
        return await self._finish(final, error=error)

    async def _park_unreadable(self, error: CorruptRecordError) -> WorkflowStatus | None:
        """Park the workflow because a stored record of it cannot be read; None (the run
        is abandoned) when even that write fails."""
        workflow_id = self._record.workflow_id
        if not error.context.get("explained"):
            error = unreadable_history(workflow_id, error)
        logger.error("workflow %s parked: %s", workflow_id, error)
        try:
            return await self._finish(WorkflowStatus.PARKED, error=error)
        except (LeaseLostError, StoreError) as failure:
            logger.warning("workflow %s could not be parked: %s", workflow_id, failure)
            # A store that failed may let the retry park it; a record it cannot read
            # back after the write would fail the same way again.
            self.failed_on_store = isinstance(failure, StoreError) and not isinstance(
                failure, CorruptRecordError
            )
            self._final_error = failure
            return None

    async def _finish(
        self,
        status: WorkflowStatus,
        *,
        result: str | None = None,
        error: BaseException | None = None,
    ) -> WorkflowStatus:
        env = self._env
        self._final_error = error
        info = None if error is None else error_to_info(error, env.error_formatter).to_json()
        self.final_record = await env.store.set_workflow_status(
            self._fence, status, now=env.clock.now(), result=result, error=info
        )
        return status


class _Completed:
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def _control_flow_in(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The control jump inside an exception group raised by a TaskGroup, if any.

    Abandoning wins over suspending; the earliest wake-up wins among suspensions.
    """
    abandons = group.subgroup(_Abandon)
    if abandons is not None:
        return abandons.exceptions[0]
    suspends = group.subgroup(_Suspend)
    if suspends is None:
        return None
    jumps = [jump for jump in _leaves(suspends) if isinstance(jump, _Suspend)]
    return min(jumps, key=lambda jump: jump.wake_at if jump.wake_at is not None else 2**63)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves


def _earliest(first: int | None, second: int | None) -> int | None:
    if first is None:
        return second
    return first if second is None else min(first, second)


def _cancelled(workflow_id: str) -> WorkflowCancelled:
    return WorkflowCancelled(f"workflow {workflow_id!r} was cancelled")


def _timed_out(workflow_id: str, deadline: int) -> WorkflowTimeoutError:
    return WorkflowTimeoutError(
        f"workflow {workflow_id!r} passed its deadline "
        f"({micros_to_datetime(deadline).isoformat()}) before it finished"
    )
